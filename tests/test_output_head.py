"""The ARKit head (engine/output/head.py, weights.py): fitting, the checkpoint entry, and its users.

A tiny synthetic world checks that both fits beat sending zeros on identities they never saw; a
tiny checkpoint goes through `fit_arkit_head` and back with and without a head; the shipped model
with a hand-made constant head shows that `mia blendshapes` and `mia stream` send the head's
weights (and the fit's jawOpen) when a checkpoint has one. Everything is seeded; nothing asserts a time.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.io.checkpoint import load_checkpoint, save_checkpoint, to_plain
from engine.output.arkit import ARKIT_INDEX, ARKIT_NAMES
from engine.output.head import (HEAD_KEY, ArkitHead, HeadError, backbone_fingerprint, fit_arkit_head, fit_head,
                                fit_mlp, head_status, store_arkit_head)
from engine.output.weights import WeightSource

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo_capture"
MODEL = ROOT / "resources" / "default_model.pt"
TIMEOUT_S = 240.0
BLINK, JAW = ARKIT_INDEX["eyeBlinkLeft"], ARKIT_INDEX["jawOpen"]
CONSTANT = 0.37  # every weight of the hand-made head


def tiny_world(identities: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes e = per-identity offset + a linear image of sparse weights + noise, like B's code of a
    face: the weights are rare events (blinks) and smooth ones (jaw) in [0, 1]."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(0).normal(size=(52, 64)).astype(np.float32)  # the same "backbone" in every world
    y = np.clip(rng.normal(0.1, 0.25, (identities * frames, 52)), 0, 1).astype(np.float32)
    y[:, BLINK] = (rng.random(identities * frames) < 0.1).astype(np.float32)
    groups = np.repeat(np.arange(identities), frames)
    offset = rng.normal(0, 0.3, (identities, 64))[groups]
    e = (y @ mix + offset + rng.normal(0, 0.1, (len(y), 64))).astype(np.float32)
    return e, y, groups


@pytest.mark.parametrize("method, all_ratio, blink_ratio", [("ridge", 0.5, 0.4), ("mlp", 0.85, 0.5)])
def test_head_fits_a_tiny_world_better_than_zeros_on_unseen_identities(method, all_ratio, blink_ratio):
    """MAE on 4 new identities as a fraction of sending zeros (measured: ridge 0.33 / 0.19, MLP 0.70 /
    0.25: 480 frames are few for an MLP, which is why the real head trains on 51,200)."""
    e, y, groups = tiny_world(12, 40, seed=1)
    e_new, y_new, _ = tiny_world(4, 40, seed=2)
    if method == "ridge":
        head = fit_head(e, y, groups, "quadratic", ridges=(0.1, 10.0))
        assert head.info["ridge"] in (0.1, 10.0) and set(head.info["cv_mae"]) == {0.1, 10.0}
    else:
        head = fit_mlp(e, y, hidden=32, epochs=30, batch=32, lr=1e-2, seed=0)
    pred = head(e_new)
    assert pred.shape == y_new.shape and pred.dtype == np.float32
    assert ((pred >= 0) & (pred <= 1)).all()
    assert np.abs(pred - y_new).mean() < all_ratio * np.abs(y_new).mean()
    assert np.abs(pred[:, BLINK] - y_new[:, BLINK]).mean() < blink_ratio * np.abs(y_new[:, BLINK]).mean()
    assert np.corrcoef(pred[:, BLINK], y_new[:, BLINK])[0, 1] > 0.9
    assert head(e_new[0]).shape == (52,) and np.allclose(head(e_new[0]), pred[0])


def test_the_mlp_fit_is_deterministic():
    e, y, _ = tiny_world(3, 20, seed=3)
    a, b = (fit_mlp(e, y, hidden=8, epochs=2, seed=5) for _ in range(2))
    assert all(np.array_equal(x, z) for la, lb in zip(a.layers, b.layers) for x, z in zip(la, lb))


def test_a_head_entry_round_trips_and_bad_entries_are_named():
    e, y, _ = tiny_world(3, 20, seed=4)
    head = fit_mlp(e, y, hidden=8, epochs=1, backbone="abc")
    back = ArkitHead.from_dict(head.to_dict())
    assert np.array_equal(back(e), head(e)) and back.backbone == "abc" and back.info["method"] == "mlp"
    bad = head.to_dict()
    bad["layers"] = bad["layers"][:-1]
    with pytest.raises(HeadError, match="do not chain"):
        ArkitHead.from_dict(bad)
    with pytest.raises(HeadError, match="format"):
        ArkitHead.from_dict({"weights": 1})
    with pytest.raises(HeadError, match="fit_head"):
        fit_head(e, y[:5], np.zeros(len(e)))


# ----------------------------------------------------------------------------- checkpoints


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    from engine.facemodel import load_face_model
    from engine.mia.config import ModelConfig
    from engine.mia.model import MIA
    torch.manual_seed(seed)
    fm = load_face_model()
    template = fm.to_topology(fm.neutral).astype(np.float32)
    model = MIA(ModelConfig.tiny(), torch.from_numpy(template))
    return save_checkpoint(path, model, topology=fm.topology.describe(), template=template,
                           identities={}, subjects={"someone": {"neutral": template}},
                           provenance={"note": "kept"}, extra={"other": 7})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("head") / "tiny.pt")


def test_a_checkpoint_without_a_head_loads_and_falls_back_to_the_fit(tiny):
    ckpt = load_checkpoint(tiny)
    status = head_status(ckpt)
    assert status.head is None and "no ARKit head" in status.reason and "bounded fit" in status.reason
    source = WeightSource.for_checkpoint(ckpt)
    assert source.mode == "fit" and "bounded fit" in source.describe()
    with pytest.raises(HeadError, match="needs an ARKit head"):
        WeightSource.for_checkpoint(ckpt, mode="head")


def test_fit_arkit_head_writes_the_checkpoint_with_a_head_and_keeps_the_rest(tiny, tmp_path):
    out = tmp_path / "with_head.pt"
    seen = []
    head = fit_arkit_head(tiny, [DEMO], out, epochs=2, hidden=16, progress=lambda d, n, t: seen.append((d, n)))
    assert (1, 1) in seen and (2, 2) in seen  # one capture through B, then two epochs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["with_head.pt"]  # no temp file left
    before, after = load_checkpoint(tiny), load_checkpoint(out)
    assert after.extra["other"] == 7 and after.provenance == before.provenance
    assert set(after.subjects) == {"someone"}
    assert all(torch.equal(before.state_dict[k], after.state_dict[k]) for k in before.state_dict)
    status = head_status(after)
    assert status.head is not None and "90 frames" in status.reason
    e = np.random.default_rng(0).normal(size=(5, after.model_config.embedding_dim)).astype(np.float32)
    assert np.array_equal(status.head(e), head(e))
    assert head.info["frames"] == 90 and head.info["captures"] == 1 and head.info["method"] == "mlp"
    seen.clear()
    assert fit_arkit_head(tiny, [DEMO], out, keep_current=True, progress=lambda d, n, t: seen.append(d)).info \
        == head.info and not seen  # a resumed recipe does not refit a current head
    # removing it gives the fit back; a head moved onto another backbone is refused with the reason
    store_arkit_head(out, None, tmp_path / "without.pt")
    assert HEAD_KEY not in load_checkpoint(tmp_path / "without.pt").extra
    other = tiny_checkpoint(tmp_path / "other.pt", seed=1)
    store_arkit_head(other, head, other)
    moved = head_status(load_checkpoint(other))
    assert moved.head is None and "another backbone" in moved.reason
    assert WeightSource.for_checkpoint(load_checkpoint(other)).mode == "fit"


def test_a_half_precision_copy_keeps_its_head_and_a_broken_entry_falls_back(tiny, tmp_path):
    ckpt = load_checkpoint(tiny)
    _, y, _ = tiny_world(2, 10, seed=5)
    e = np.random.default_rng(5).normal(size=(len(y), ckpt.model_config.embedding_dim)).astype(np.float32)
    head = fit_mlp(e, y, hidden=4, epochs=1, backbone=backbone_fingerprint(ckpt.state_dict))
    model = ckpt.build_model()
    half = save_checkpoint(tmp_path / "half.pt", model, topology=ckpt.topology, template=ckpt.template,
                           identities={}, half=True, extra={HEAD_KEY: head.to_dict()})
    assert head_status(load_checkpoint(half)).head is not None
    broken = head.to_dict()
    broken["layers"][0]["weight"] = broken["layers"][0]["weight"][:3]
    store_arkit_head(half, None, half)
    raw = torch.load(half, weights_only=True)
    raw["extra"][HEAD_KEY] = broken
    torch.save(to_plain(raw), half)
    status = head_status(load_checkpoint(half))
    assert status.head is None and "do not chain" in status.reason


def test_mia_info_shows_whether_the_weights_come_from_a_head(tiny, tmp_path):
    r = subprocess.run([sys.executable, "-m", "app.cli", "info", str(tiny)], cwd=ROOT, capture_output=True,
                       text=True, timeout=TIMEOUT_S)
    assert r.returncode == 0, r.stderr
    assert "ARKit weights: no ARKit head in this checkpoint" in r.stdout


# ----------------------------------------------------------------------------- the users


def constant_head(checkpoint: Path) -> ArkitHead:
    """A head that answers CONSTANT for every weight of every frame (one layer, zero weights)."""
    ckpt = load_checkpoint(checkpoint)
    dim = ckpt.model_config.embedding_dim
    layer = (np.zeros((dim, 52), np.float32), np.full(52, CONSTANT, np.float32))
    return ArkitHead("linear", np.zeros(dim, np.float32), np.ones(dim, np.float32), (layer,), "clip",
                     backbone_fingerprint(ckpt.state_dict), {"frames": 1})


@pytest.fixture(scope="module")
def model_with_head(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "with_head.pt"
    return store_arkit_head(MODEL, constant_head(MODEL), out)


@pytest.fixture(scope="module")
def model_without_head(tmp_path_factory) -> Path:
    """The shipped model with its head removed (the shipped file carries one)."""
    return store_arkit_head(MODEL, None, tmp_path_factory.mktemp("model") / "no_head.pt")


def test_weight_source_modes_and_the_output_thread(model_with_head):
    from engine.output.stage import OutputConfig
    from engine.output.streamer import OutputStreamer
    source = WeightSource.for_checkpoint(load_checkpoint(model_with_head))
    assert source.mode == "combined"
    fit_only = np.full(52, 0.9, np.float32)

    class Solver:  # stands in for the bounded fit: a known answer for any mesh
        def arkit(self, mesh, neutral):
            return fit_only if np.ndim(mesh) == 2 else np.tile(fit_only, (len(mesh), 1))

        def gaze(self, mesh, neutral):
            return np.zeros((2, 2), np.float32)

    source = WeightSource(source.head, "combined", "test", solver=Solver())
    mesh, e = np.zeros((4, 3), np.float32), np.zeros(source.head.embedding_dim, np.float32)
    w = source.arkit(mesh, mesh, e)
    jaw = np.arange(52) == JAW  # the combined mode's one shape from the fit
    assert np.allclose(w[jaw], 0.9) and np.allclose(w[~jaw], CONSTANT)
    assert np.allclose(WeightSource(source.head, "head", solver=Solver()).arkit(mesh, mesh, e), CONSTANT)
    assert np.allclose(source.arkit(mesh, mesh, None), 0.9)  # no code: the fit answers
    streamer = OutputStreamer(OutputConfig(), solver=Solver())  # type: ignore[arg-type]
    try:
        streamer.set_weights(source)
        streamer.submit(mesh, mesh, embedding=e)
        from osc_receiver import wait_for
        assert wait_for(lambda: streamer.latest()[0] is not None, timeout=60.0)
        raw, _, stats = streamer.latest()
        assert np.allclose(raw[~jaw], CONSTANT) and np.allclose(raw[jaw], 0.9)
        assert "head on e" in stats["weights"]
    finally:
        streamer.close()


def run_mia(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    import os
    env = dict(os.environ, MIA_STUDIO_HOME=str(tmp_path / "home"), MIA_STUDIO_THREADS="1")
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def read_weights(path: Path) -> tuple[list[str], np.ndarray]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    return rows[0], np.array(rows[1:], np.float64)


def test_blendshapes_cli_sends_the_head_and_the_fit_for_jaw_open(model_with_head, tmp_path):
    out = tmp_path / "w.csv"
    r = run_mia(tmp_path, "blendshapes", str(DEMO), "--out", str(out), "--model", str(model_with_head))
    assert r.returncode == 0, r.stderr
    assert "head on e" in r.stdout
    header, data = read_weights(out)
    pred = data[:, 2:54]
    assert header[2:54] == list(ARKIT_NAMES)
    assert np.allclose(pred[:, BLINK], CONSTANT, atol=1e-6)
    truth = data[:, header.index("true_jawOpen")]
    assert np.corrcoef(pred[:, JAW], truth)[0, 1] > 0.6  # the jaw is the fit's, following the truth
    r = run_mia(tmp_path, "blendshapes", str(DEMO), "--out", str(out), "--model", str(model_with_head),
                "--weights", "head", "--batch", "45")
    assert r.returncode == 0, r.stderr
    assert np.allclose(read_weights(out)[1][:, 2:54], CONSTANT, atol=1e-6)


def test_stream_cli_uses_the_head_when_present(model_with_head, model_without_head, tmp_path):
    stats = tmp_path / "stats.json"
    r = run_mia(tmp_path, "stream", str(DEMO), "--model", str(model_with_head), "--frames", "5", "--fps", "0",
                "--json", str(stats))
    assert r.returncode == 0, r.stderr
    assert "ARKit weights: head on e" in r.stderr
    summary = json.loads(stats.read_text())
    assert summary["weights"] == "combined" and summary["frames"] == 5
    r = run_mia(tmp_path, "stream", str(DEMO), "--model", str(model_without_head), "--frames", "2", "--fps", "0",
                "--json", str(stats))
    assert r.returncode == 0, r.stderr
    summary = json.loads(stats.read_text())
    assert summary["weights"] == "fit" and "no ARKit head" in summary["weights_reason"]


def test_arkit_head_cli_errors_are_one_line(tmp_path):
    r = run_mia(tmp_path, "arkit-head", str(tmp_path / "none.pt"), str(DEMO), "--out", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "no such checkpoint file" in r.stderr and "Traceback" not in r.stderr
    r = run_mia(tmp_path, "arkit-head", str(MODEL), str(tmp_path / "nodata"), "--out", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "no such dataset folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.pt").exists()
