"""Adaptation to a new subject (engine/training/adapt.py, `mia adapt`; the paper's Table 3): only F_new
trains, B and G stay bit-identical, and meshes of another topology are refused clearly."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main as cli_main
from engine.training.adapt import AdaptConfig, adapt, check_unchanged, shared_state
from engine.io.checkpoint import load_checkpoint
from engine.errors import CaptureError, CheckpointError, ConfigError
from engine.mia.model import MIA
from engine.training.trainer import train
from test_train import NO_AUG, coded_copy, tiny_cfg

TRAINED = ("id000", "id001")
NEW = "id002"


@pytest.fixture(scope="session")
def all_coded(synth_dataset, tmp_path_factory) -> Path:
    return coded_copy(synth_dataset, tmp_path_factory.getbasetemp() / "mia_tiny_all_coded",
                      subjects=(*TRAINED, NEW))


@pytest.fixture(scope="session")
def trained(all_coded, tmp_path_factory) -> Path:
    out = tmp_path_factory.getbasetemp() / "mia_tiny_trained"
    return train(tiny_cfg(steps=3, subjects=list(TRAINED)), all_coded, out, show_bar=False)


def shared(model: MIA) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(f"texture.adapters.{NEW}")
            and not k.startswith(f"texture.code_spaces.{NEW}")}


def test_adaptation_trains_only_the_new_adaptation_layer(trained, all_coded, tmp_path):
    before = load_checkpoint(trained)
    assert list(before.identities) == list(TRAINED)
    out = adapt(trained, all_coded, NEW, tmp_path / "adapted.pt",
                AdaptConfig(steps=5, batch_size=4, augment=NO_AUG), show_bar=False)
    after = load_checkpoint(out)
    assert list(after.identities) == [*TRAINED, NEW] and NEW in after.subjects
    old, new = before.build_model(), after.build_model()
    for k, v in shared(old).items():
        assert torch.equal(v, new.state_dict()[k]), k
    # F_new moved away from its initial value (rebuilt here the way adapt() seeds it)
    torch.manual_seed(0)
    fresh = before.build_model()
    codes = torch.from_numpy(np.load(next((all_coded / "captures").glob(f"{NEW}_*")) / "codes.npy"))
    fresh.add_identity(NEW, codes)
    w_fresh = fresh.texture.adapters[NEW].linear.weight
    w_new = new.texture.adapters[NEW].linear.weight
    assert not torch.equal(w_fresh, w_new)
    # P_new and z_bar_new are the PCA of the subject's codes, fixed
    space = new.texture.code_spaces[NEW]
    assert torch.allclose(space.mean, codes.mean(0), atol=1e-4)
    assert space.basis.shape == (256, old.cfg.pca_dim)
    assert after.provenance["adaptations"][0]["subject"] == NEW


def test_adaptation_refuses_what_it_cannot_do(trained, all_coded, tmp_path):
    with pytest.raises(ConfigError, match="already has an adaptation layer for 'id000'"):
        adapt(trained, all_coded, "id000", tmp_path / "x.pt", AdaptConfig(steps=1), show_bar=False)
    uncoded = without_codes(all_coded, tmp_path)
    with pytest.raises(CaptureError, match="have no codes.npy"):
        adapt(trained, uncoded, NEW, tmp_path / "x.pt", AdaptConfig(steps=1, augment=NO_AUG),
              show_bar=False)
    assert not (tmp_path / "x.pt").exists()


def without_codes(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "uncoded"
    shutil.copytree(src, dst)
    for codes in dst.glob("captures/*/codes.npy"):
        codes.unlink()
    return dst


def test_neutral_of_another_topology_is_refused(trained, all_coded, tmp_path):
    ckpt = load_checkpoint(trained)
    V = ckpt.topology["vertex_count"]
    wrong = np.zeros((V - 7, 3), np.float32)
    with pytest.raises(CheckpointError, match=f"has {V - 7} vertices .* with {V} vertices"):
        ckpt.check_neutral(wrong)
    with pytest.raises(CheckpointError, match=f"has {V - 7} vertices"):
        adapt(trained, all_coded, NEW, tmp_path / "x.pt", AdaptConfig(steps=1, augment=NO_AUG),
              neutral=wrong, show_bar=False)


def test_cli_adapt_end_to_end(trained, all_coded, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    rc = cli_main(["adapt", str(trained), str(all_coded), "--subject", NEW, "--out", str(out),
                   "--steps", "2", "--batch-size", "2", "--no-augment", "--quiet"])
    assert rc == 0 and f"added '{NEW}'" in capsys.readouterr().out
    assert NEW in load_checkpoint(out).identities
    rc = cli_main(["adapt", str(trained), str(all_coded), "--subject", "nobody", "--out",
                   str(out), "--quiet"])
    assert rc == 2 and "no captures of subjects ['nobody']" in capsys.readouterr().err


def test_the_frozen_weights_check_catches_a_change(trained):
    model = load_checkpoint(trained).build_model()
    before = shared_state(model, NEW)
    check_unchanged(model, before, "here")
    with torch.no_grad():
        model.shape_network.output_layer.bias[0] += 1e-6
    with pytest.raises(AssertionError, match="changed shared weights \\['shape_network"):
        check_unchanged(model, before, "here")


def test_captures_of_another_topology_are_refused(trained, all_coded, tmp_path):
    copy = tmp_path / "other"
    shutil.copytree(all_coded, copy)
    meta_file = next((copy / "captures").glob(f"{NEW}_*")) / "capture.json"
    meta = json.loads(meta_file.read_text())
    meta["topology"]["hash"] = "0123456789abcdef"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CaptureError, match="hash 0123456789abcdef\\) differs from topology"):
        adapt(trained, copy, NEW, tmp_path / "x.pt", AdaptConfig(steps=1, augment=NO_AUG),
              show_bar=False)
