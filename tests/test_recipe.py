"""The shipped-model recipe at toy sizes: every stage runs, blocks get their own people and
spreads, the last block's run is the one evaluated, and a second run resumes instead of redoing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.io.checkpoint import load_checkpoint
from engine.mia.config import ModelConfig
from engine.recipe import BlockConfig, RecipeConfig, run_recipe


def tiny_recipe(root: Path) -> RecipeConfig:
    return RecipeConfig(
        root=str(root), identities=3, frames=4, size=32, avatar_subjects=1, avatar_steps=4,
        heldout_identities=1, heldout_frames=4, steps=3, batch_size=2, jobs=1,
        blocks=[BlockConfig("wide", identities=2, frames=4, steps=2),
                BlockConfig("wider", identities=2, captures=3, frames=3, spread="wider", steps=2, lr=1e-4)],
        polish_steps=3, polish_lr=5e-5, finish_steps=2, finish_lr=4e-5,
        model=ModelConfig.tiny().to_dict(),
        train={"augment": {"probability": 0.5, "rot_deg": 2.0}, "checkpoint_every": 100, "log_every": 1, "num_workers": 0})


def subjects(folder: Path) -> set[str]:
    return {p.name for p in (folder / "subjects").iterdir()}


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory) -> tuple[RecipeConfig, Path, dict, list[str]]:
    cfg = tiny_recipe(tmp_path_factory.mktemp("recipe"))
    logs: list[str] = []
    checkpoint, summary = run_recipe(cfg, logs.append)
    return cfg, checkpoint, summary, logs


def test_each_block_adds_new_people_in_its_own_spreads(recipe_run) -> None:
    cfg, _, _, _ = recipe_run
    p = cfg.paths
    assert subjects(p["train"]) == {"id000", "id001", "id002"}
    assert subjects(p["train_wide"]) == {"id003", "id004"}
    assert subjects(p["train_wider"]) == {"id005", "id006"}
    assert len(list((p["train_wider"] / "captures").iterdir())) == 2 * 3
    wide = json.loads((p["train_wide"] / "dataset.json").read_text())["config"]
    wider = json.loads((p["train_wider"] / "dataset.json").read_text())["config"]
    assert wider["session"]["slop_trans_mm"] > wide["session"]["slop_trans_mm"]
    assert wider["headset"]["placement_mm"] > wide["headset"]["placement_mm"]
    assert wider["frames_per_capture"] == 3 and wider["captures_per_identity"] == 3


def test_each_stage_fine_tunes_the_one_before_and_the_finish_is_evaluated(recipe_run) -> None:
    cfg, checkpoint, summary, _ = recipe_run
    assert checkpoint == cfg.final_run / "last.pt" == cfg.paths["run_finish"] / "last.pt"
    wider = load_checkpoint(cfg.paths["run_wider"] / "last.pt")
    assert wider.train_config["init_from"] == str(cfg.paths["run_wide"] / "last.pt")
    assert wider.train_config["steps"] == 2 and wider.train_config["lr"] == pytest.approx(1e-4)
    polish = load_checkpoint(cfg.paths["run_polish"] / "last.pt")
    assert polish.train_config["init_from"] == str(cfg.paths["run_wider"] / "last.pt")
    assert polish.train_config["steps"] == 3 and polish.train_config["lr"] == pytest.approx(5e-5)
    assert polish.train_config["augment"] == {"probability": 0.5, "rot_deg": 2.0}
    assert polish.training["step"] == 3
    assert (cfg.paths["run_polish"] / "log.csv").read_text().count("\n") == 1 + 3  # one row a step
    finish = load_checkpoint(checkpoint)  # the polished model, without the 3D augmentation layer
    assert finish.train_config["init_from"] == str(cfg.paths["run_polish"] / "last.pt")
    assert finish.train_config["steps"] == 2 and finish.train_config["lr"] == pytest.approx(4e-5)
    assert finish.train_config["augment"] == {"enabled": False}
    assert finish.training["step"] == 2
    saved = json.loads((cfg.final_run / "eval" / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    for world in ("heldout", "heldout_wider", "newcaps"):
        assert set(summary[world]) >= {"shape", "baseline"}
        assert summary[world]["baseline"]["face"] > 0


def test_a_second_run_resumes_every_stage(recipe_run) -> None:
    cfg, checkpoint, _, _ = recipe_run
    before = {p: p.stat().st_mtime_ns for p in Path(cfg.root).rglob("*")
              if p.is_file() and p.suffix in (".pt", ".mkv", ".npy") and "eval" not in p.parts}
    logs: list[str] = []
    again, _ = run_recipe(cfg, logs.append)
    assert again == checkpoint
    assert sum("nothing to do" in line for line in logs) == 5  # stage 1, both blocks, polish, finish
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before


def test_inactive_blocks_are_skipped(tmp_path) -> None:
    cfg = tiny_recipe(tmp_path)
    cfg.blocks[1].identities = 0
    cfg.polish_steps = 0
    assert cfg.final_run == cfg.paths["run_finish"]  # the finish still runs, on the last block's model
    cfg.finish_steps = 0
    assert [b.name for b in cfg.active_blocks] == ["wide"]
    assert cfg.final_run == cfg.paths["run_wide"]
    assert cfg.first_identity(cfg.blocks[0]) == 3
    with pytest.raises(ValueError, match="not active"):
        cfg.first_identity(cfg.blocks[1])


def test_mia_model_mirror_option_reaches_every_stage(tmp_path) -> None:
    """`mia model --mirror P` trains stage 1 and every fine-tuning stage on mirror images."""
    from app.cli import build_parser
    from app.commands.model import recipe_from_args
    from engine.recipe import finetune_config, train_config
    args = build_parser().parse_args(["model", "--root", str(tmp_path), "--mirror", "0.5"])
    cfg = recipe_from_args(args)
    assert train_config(cfg).mirror == 0.5
    assert finetune_config(cfg, tmp_path / "run_x", 10, 1e-4, tmp_path / "start.pt").mirror == 0.5
    default = recipe_from_args(build_parser().parse_args(["model", "--root", str(tmp_path)]))
    assert train_config(default).mirror == 0.0  # the shipped model's recipe is unchanged
