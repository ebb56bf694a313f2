"""Training data and loop (engine/training/, `mia train`): samples, loss, resume,
DDP, cancel and kill, the CLI. Everything runs on the session's tiny synthetic dataset (synth_world.py)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from app.cli import main as cli_main
from engine.io.capture_reader import list_captures, open_capture
from engine.io.capture_schema import read_meta
from engine.io.checkpoint import load_checkpoint
from engine.training.dataset import UNSEEN_WEIGHT, HMCDataset, find_captures, frame_cameras, split_frames
from engine.io.layout import neutral_path
from engine.facemodel import load_face_model
from engine.errors import CaptureError, ConfigError, MeshError
from engine.mia.baseline_ps import PersonSpecificEncoder
from engine.mia.config import ModelConfig
from engine.mia.model import MIA
from engine.training.sampler import StepBatchSampler
from engine.training.config import TrainConfig
from engine.training.trainer import Trainer, train

SIZE = 32
V_MODEL = load_face_model().topology.vertex_count
NO_AUG = {"enabled": False}
CODED = ("id000", "id001")  # subjects given synthetic avatar codes; id002 stays shape-only


def write_codes(capture: Path, seed: int) -> np.ndarray:
    """Synthetic avatar codes: a random per-subject linear map of the expression weights."""
    expressions = np.load(capture / "expressions.npy")
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 1, (expressions.shape[1], 256)) / np.sqrt(expressions.shape[1])
    codes = (expressions @ W + rng.normal(0, 0.5, 256)).astype(np.float32)
    np.save(capture / "codes.npy", codes)
    return codes


def coded_copy(src: Path, dst: Path, subjects=CODED) -> Path:
    shutil.copytree(src, dst)
    for k, cap in enumerate(list_captures(dst)):
        if read_meta(cap).subject_id in subjects:
            write_codes(cap, k)
    return dst


@pytest.fixture(scope="session")
def dataset(synth_dataset) -> Path:
    return synth_dataset


@pytest.fixture(scope="session")
def coded(dataset, tmp_path_factory) -> Path:
    return coded_copy(dataset, tmp_path_factory.getbasetemp() / "mia_tiny_coded")


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(steps=4, batch_size=4, augment=NO_AUG, log_every=1, checkpoint_every=100,
                model=ModelConfig.tiny(image_size=SIZE))
    return TrainConfig(**{**base, **kw})


class LinearDecoder(nn.Module):
    """A stand-in avatar decoder D(z, view) -> (N, 8, 8) texture in [0, 1], with a W_T mask."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(256 + 3, 64)
        self.register_buffer("texel_weights", (torch.rand(8, 8) > 0.3).float())

    def forward(self, z: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(torch.cat([z / 4, view], 1))).view(-1, 8, 8)


# --------------------------------------------------------------------------- data


def test_dataset_items_and_cameras(coded):
    paths = find_captures(coded)
    ds = HMCDataset(paths, 24, split="train", val_fraction=0.25)
    assert len(ds) == 3 * 12 and ds.subjects == ["id000", "id001", "id002"]
    item = ds[5]
    V = ds.vertex_count
    assert item["images"].shape == (3, 24, 24) and item["images"].dtype == torch.uint8
    assert item["mesh"].shape == item["neutral"].shape == (V, 3)
    w = item["shape_weights"]
    assert torch.isin(w, torch.tensor([UNSEEN_WEIGHT, 1.0])).all() and (w == 1).any() and (w < 1).any()
    assert torch.allclose(item["view"].norm(), torch.tensor(1.0))
    shape_only = next(ds[i] for i in range(len(ds)) if ds[i]["subject"] == "id002")
    assert not shape_only["has_code"] and shape_only["code"].isnan().all()
    assert ds[0]["has_code"] and ds.subject_codes("id000").shape == (12, 256)
    assert ds.subject_codes("id002") is None
    # the same key always gives the same sample; the next epoch's key the same frame
    assert torch.equal(ds[7]["mesh"], ds[7 + len(ds)]["mesh"]) and ds[7]["key"] == 7
    # cameras: calibration o head pose at the model size, projecting the mesh into the image
    cams = ds.cameras(5)
    with open_capture(paths[0]) as cap:
        pose = cap.head_pose[5]
        direct = frame_cameras(cap.meta, None, 24)[0]
    assert cams[0].width == 24 and np.allclose(cams[0].mv, direct.mv @ pose, atol=1e-4)
    px, z = cams[2].project(item["mesh"].numpy())
    assert (z > 0).all() and ((px > 0) & (px < 24)).all(1).mean() > 0.3


def test_split_and_filters(dataset, tmp_path):
    train_idx, val_idx = split_frames(10, 0.2)
    assert train_idx.tolist() == list(range(8)) and val_idx.tolist() == [8, 9]
    assert len(find_captures(dataset, subjects=["id001"])) == 1
    assert [p.name for p in find_captures(dataset, captures=["id002_c00"])] == ["id002_c00"]
    with pytest.raises(CaptureError, match="no captures of subjects \\['nobody'\\]"):
        find_captures(dataset, subjects=["nobody"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="no capture folders found"):
        find_captures(tmp_path / "empty")
    with pytest.raises(CaptureError, match="no capture folders given"):
        HMCDataset([], SIZE)


def test_missing_or_mismatched_neutral_is_a_clear_error(dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    cap = find_captures(copy, subjects=["id000"])[0]
    neutral = neutral_path(cap, "id000")
    neutral.unlink()
    with pytest.raises(MeshError, match="neutral.obj: missing; subject 'id000'"):
        HMCDataset([cap], SIZE)
    with pytest.raises(MeshError, match=f"expected \\({V_MODEL}, 3\\)"):
        HMCDataset([cap], SIZE, neutrals={"id000": np.zeros((100, 3), np.float32)})


def test_sampler_shards_the_single_process_stream():
    one = StepBatchSampler(10, 4, seed=3, start=0, stop=5)
    two = [StepBatchSampler(10, 2, seed=3, start=0, stop=5, rank=r, world_size=2) for r in (0, 1)]
    for step in range(5):
        assert one.keys(step) == two[0].keys(step) + two[1].keys(step)
    keys = [k for b in one for k in b]
    assert sorted(k % 10 for k in keys[:10]) == list(range(10))  # epoch 0 is a permutation
    later = StepBatchSampler(10, 4, seed=3, start=3, stop=5)
    assert list(later) == list(one)[3:]


# --------------------------------------------------------------------------- loop


def test_loss_goes_down_on_a_fixed_batch(coded, tmp_path):
    decoders = {s: LinearDecoder(k) for k, s in enumerate(CODED)}
    trainer = Trainer(tiny_cfg(steps=100, batch_size=6, lr_step=1000), coded, tmp_path,
                      texture_decoders=decoders, show_bar=False)
    assert isinstance(trainer.model, MIA) and trainer.model.identities == list(CODED)
    batch = next(iter(trainer.loader()))
    assert set(batch["subject"]) == {"id000", "id001", "id002"}
    first = trainer.train_step(batch)
    for _ in range(20):
        last = trainer.train_step(batch)
    assert first.texture > 0 and first.shape > 0
    assert last.total < 0.6 * first.total
    assert last.shape < first.shape and last.texture < first.texture


def _state(path: Path) -> tuple[dict, dict]:
    ckpt = load_checkpoint(path)
    return ckpt.state_dict, ckpt.training


def test_resume_reaches_the_identical_state(coded, tmp_path):
    cfg = tiny_cfg(steps=6, lr_step=2)
    straight = train(cfg, coded, tmp_path / "a", show_bar=False)
    train(tiny_cfg(steps=3, lr_step=2), coded, tmp_path / "b", show_bar=False)
    assert _state(tmp_path / "b" / "last.pt")[1]["step"] == 3
    resumed = train(cfg, coded, tmp_path / "b", resume=True, show_bar=False)
    (wa, ta), (wb, tb) = _state(straight), _state(resumed)
    assert tb["step"] == 6 and wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert ta["scheduler"] == tb["scheduler"]
    for sa, sb in zip(ta["optimizer"]["state"].values(), tb["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    log_a = (tmp_path / "a" / "log.csv").read_text().splitlines()
    log_b = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [r.split(",")[:5] for r in log_a] == [r.split(",")[:5] for r in log_b]
    assert len(log_b) == 7


def test_init_from_starts_a_new_run_from_the_weights(coded, dataset, tmp_path):
    first = train(tiny_cfg(steps=3), coded, tmp_path / "a", show_bar=False)
    start = load_checkpoint(first)
    trainer = Trainer(tiny_cfg(steps=2, lr=5e-4, init_from=str(first),
                               model=ModelConfig.tiny(image_size=24)),  # the checkpoint's wins
                      coded, tmp_path / "b", show_bar=False)
    assert trainer.step == 0 and trainer.cfg.model == start.model_config
    assert trainer.optimizer.param_groups[0]["lr"] == 5e-4
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, start.state_dict[k].to(v.dtype)), k
    trainer.run()
    grown = load_checkpoint(tmp_path / "b" / "last.pt")
    assert grown.training["step"] == 2 and grown.identities.keys() == start.identities.keys()
    assert any(not torch.equal(grown.state_dict[k], start.state_dict[k]) for k in start.state_dict)
    with pytest.raises(ConfigError, match="adaptation layers for"):
        train(tiny_cfg(steps=1, init_from=str(first)), dataset, tmp_path / "c", show_bar=False)


def test_resume_without_checkpoint_is_a_clear_error(dataset, tmp_path):
    with pytest.raises(Exception, match="nothing to resume from"):
        train(tiny_cfg(), dataset, tmp_path, resume=True, show_bar=False)


def test_ps_baseline_trains_one_subject(coded, tmp_path):
    with pytest.raises(ConfigError, match="set ps_subject"):
        Trainer(tiny_cfg(kind="ps"), coded, tmp_path, show_bar=False)
    path = train(tiny_cfg(kind="ps", ps_subject="id001", steps=2), coded, tmp_path,
                 show_bar=False)
    ckpt = load_checkpoint(path)
    model = ckpt.build_model()
    assert isinstance(model, PersonSpecificEncoder) and model.subject == "id001"
    assert list(ckpt.identities) == ["id001"] and list(ckpt.subjects) == ["id001"]
    assert float((tmp_path / "log.csv").read_text().splitlines()[-1].split(",")[3]) > 0


def test_cancel_leaves_a_loadable_resumable_checkpoint(dataset, tmp_path):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    path = train(tiny_cfg(steps=50), dataset, tmp_path, cancel=cancel, show_bar=False)
    ckpt = load_checkpoint(path)
    assert ckpt.training["step"] == 3
    assert isinstance(ckpt.build_model(), MIA) and ckpt.topology["vertex_count"] == V_MODEL
    train(tiny_cfg(steps=5), dataset, tmp_path, resume=True, show_bar=False)
    assert load_checkpoint(path).training["step"] == 5


def test_killed_cli_run_leaves_a_loadable_checkpoint(dataset, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "app.cli", "train", str(dataset), "--out", str(out), "--model",
           "tiny", "--size", str(SIZE), "--steps", "100000", "--batch-size", "2", "--no-augment",
           "--log-every", "1", "--checkpoint-every", "1000", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.csv"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) > 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.training["step"] >= 2 and "interrupted" in err
    ckpt.build_model()


def test_cli_train_end_to_end(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli_main(["train", str(dataset), "--out", str(out), "--model", "tiny", "--size",
                   str(SIZE), "--steps", "3", "--batch-size", "2", "--no-augment", "--quiet",
                   "--subjects", "id000,id002", "--log-every", "1"])
    assert rc == 0 and "checkpoint" in capsys.readouterr().out
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.train_config["subjects"] == ["id000", "id002"]
    assert set(ckpt.subjects) == {"id000", "id002"} and ckpt.identities == {}
    assert (out / "log.csv").read_text().splitlines()[0].startswith("step,loss,shape_loss")
    assert len((out / "log.csv").read_text().splitlines()) == 4
    rc = cli_main(["train", str(dataset), "--out", str(tmp_path / "x"), "--steps", "0"])
    assert rc == 2 and "steps must be >= 1" in capsys.readouterr().err


def test_training_with_3d_augmentation(dataset, tmp_path):
    pytest.importorskip("engine.training.augment")
    trainer = Trainer(tiny_cfg(augment={"enabled": True}), dataset, tmp_path, show_bar=False)
    assert trainer.dataset.augment is not None
    batch = next(iter(trainer.loader()))
    assert batch["images"].shape == (4, 3, SIZE, SIZE) and batch["images"].dtype == torch.uint8
    assert trainer.train_step(batch).total.isfinite()


# --------------------------------------------------------------------------- DDP


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
            for n, p in model.named_parameters()}


def _ddp_worker(rank: int, world: int, rendezvous: str, data: str, out: str) -> None:
    """One rank of torchrun's environment. The group meets through a file, not a TCP port: no
    free-port race with other processes, and no store server that dies with rank 0."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world)
    try:
        trainer = Trainer(tiny_cfg(steps=2, batch_size=2), data, out, show_bar=False)
        try:
            trainer.backward(next(iter(trainer.loader())))
            torch.save(_grads(trainer.model), Path(out) / f"grads{rank}.pt")
            trainer.run()
        finally:
            trainer.close()
        del trainer  # DDP's reducer goes before the group does
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_gradients_equal_one_process_on_the_union_batch(coded, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(coded), str(out)), nprocs=2,
             join=True)
    single = Trainer(tiny_cfg(steps=2, batch_size=4), coded, tmp_path / "one", show_bar=False)
    single.backward(next(iter(single.loader())))
    expected = _grads(single.model)
    for rank in (0, 1):
        got = torch.load(out / f"grads{rank}.pt")
        assert got.keys() == expected.keys()
        for k in expected:
            # summation order differs between 1 and 2 processes: float noise scales with the
            # tensor's magnitude, so the absolute floor is 1e-6 of its largest entry (at least 1e-6)
            scale = max(1.0, float(expected[k].abs().max()))
            assert torch.allclose(got[k], expected[k], rtol=1e-4, atol=1e-6 * scale), (
                k, float((got[k] - expected[k]).abs().max()), scale)
    assert any(v.abs().sum() > 0 for k, v in expected.items() if k.startswith("texture."))
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.training["step"] == 2 and ckpt.provenance["world_size"] == 2
    assert len((out / "log.csv").read_text().splitlines()) == 3


def test_jittered_samples_are_a_pure_function_of_seed_and_key(dataset):
    """Per-sample image draws come from (seed, key): the same key gives the same images in any
    process (resume and DDP stay exact), other keys or seeds give other draws."""
    from engine.training.jitter import JitterConfig
    paths = find_captures(dataset)
    make = lambda seed: HMCDataset(paths, SIZE, jitter=JitterConfig(), seed=seed)  # noqa: E731
    a, b, other_seed, plain = make(3), make(3), make(4), HMCDataset(paths, SIZE, seed=3)
    n = len(a)
    assert torch.equal(a[5]["images"], b[5]["images"])
    assert not torch.equal(a[5]["images"], other_seed[5]["images"])
    assert not torch.equal(a[5]["images"], a[5 + n]["images"])  # same frame, next epoch: new draw
    assert not torch.equal(a[5]["images"], plain[5]["images"])  # jitter changed the frame
    assert torch.equal(plain[5]["images"], plain[5 + n]["images"])


def test_mirrored_samples_are_the_mirror_image_and_train_b_and_g_only(coded, tmp_path):
    """mirror=1: every sample is its plain twin's mirror image (eye cameras swapped, images flipped,
    mesh, neutral and W_S mirrored with the face model's map), with no code target; the jitter
    draws stay those of the plain sample; mirror=0.5 mirrors a seeded half; the trainer wires it."""
    from engine.training.jitter import JitterConfig
    index = load_face_model().mirror_index
    paths = find_captures(coded)
    plain = HMCDataset(paths, SIZE, jitter=JitterConfig(), seed=3)
    mirrored = HMCDataset(paths, SIZE, jitter=JitterConfig(), seed=3, mirror=1.0, mirror_index=index)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    for key in (0, 5, 40):
        a, b = plain[key], mirrored[key]
        assert not b["has_code"] and b["code"].isnan().all()  # a mirrored code would be wrong
        assert torch.equal(b["images"], a["images"][[1, 0, 2]].flip(-1))
        assert torch.equal(b["mesh"], (a["mesh"] * flip)[index])
        assert torch.equal(b["neutral"], (a["neutral"] * flip)[index])
        assert torch.equal(b["shape_weights"], a["shape_weights"][index])
        assert not torch.allclose(b["mesh"], a["mesh"], atol=0.5)  # the mirror really moved it
    half = HMCDataset(paths, SIZE, seed=3, mirror=0.5, mirror_index=index)
    flipped = [not bool(half[k]["has_code"]) for k in range(len(half)) if half[k]["subject"] != "id002"]
    assert 0.25 < np.mean(flipped) < 0.75
    again = HMCDataset(paths, SIZE, seed=3, mirror=0.5, mirror_index=index)
    assert all(torch.equal(half[k]["images"], again[k]["images"]) for k in range(0, len(half), 7))
    with pytest.raises(ConfigError, match="mirroring needs a mirror map"):
        HMCDataset(paths, SIZE, mirror=0.5)
    with pytest.raises(ConfigError, match="mirror is a probability"):
        tiny_cfg(mirror=1.5)
    trainer = Trainer(tiny_cfg(mirror=0.5), coded, tmp_path, show_bar=False)
    assert trainer.dataset.mirror == 0.5 and trainer.train_step(next(iter(trainer.loader()))).total.isfinite()
