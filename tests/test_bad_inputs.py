"""Model files are other people's files: loading one never runs code, and bad numbers or fields get
a message naming the file and field, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.io.checkpoint import atomic_torch_save, load_checkpoint
from engine.errors import AvatarError, CheckpointError
from engine.mia.config import ModelConfig
from engine.mia.model import MIA

ROOT = Path(__file__).resolve().parents[1]
V = 30


class _Payload:
    """What an attacker hides in a pickle: unpickling calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tiny_checkpoint(path: Path) -> Path:
    from engine.io.checkpoint import save_checkpoint
    template = np.random.default_rng(0).normal(size=(V, 3)).astype(np.float32)
    model = MIA(ModelConfig.tiny(), torch.from_numpy(template))
    return save_checkpoint(path, model, topology={"name": "t", "vertex_count": V, "hash": "h"},
                           template=template, identities={})


def raw(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_a_checkpoint_with_a_code_payload_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    good = tiny_checkpoint(tmp_path / "good.pt")
    marker = tmp_path / "pwned"
    d = raw(good)
    d["provenance"] = {"note": _Payload(marker)}
    evil = tmp_path / "evil.pt"
    torch.save(d, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()
    out = subprocess.run([sys.executable, "-m", "app.cli", "info", str(evil)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "refused" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists()


def test_an_avatar_with_a_code_payload_is_refused(tmp_path: Path) -> None:
    from engine.avatar import load_avatar
    marker = tmp_path / "pwned"
    torch.save({"format": "x", "evil": _Payload(marker)}, tmp_path / "avatar.pt")
    with pytest.raises(AvatarError, match="refused"):
        load_avatar(tmp_path / "avatar.pt")
    assert not marker.exists()


@pytest.mark.parametrize("break_it, message", [
    (lambda d: d["state_dict"].__setitem__(next(iter(d["state_dict"])), torch.full((1,), float("nan"))
                                           .expand_as(next(iter(d["state_dict"].values()))).clone()),
     "NaN"),
    (lambda d: d.__setitem__("template", torch.full((V, 3), float("nan"))), "template"),
    (lambda d: d.__setitem__("state_dict", [1, 2]), "state_dict"),
    (lambda d: d["model_config"].__setitem__("vertex_count", V + 1), "vertex_count"),
    (lambda d: d.__setitem__("identities", {"x": {"neutral": torch.zeros(4, 3)}}), "identities.x.neutral"),
])
def test_bad_fields_are_named(tmp_path: Path, break_it, message: str) -> None:
    d = raw(tiny_checkpoint(tmp_path / "m.pt"))
    break_it(d)
    torch.save(d, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.pt")


def test_a_saved_checkpoint_holds_only_plain_data_and_loads_back(tmp_path: Path) -> None:
    path = tiny_checkpoint(tmp_path / "m.pt")
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt.template, np.ndarray) and ckpt.template.shape == (V, 3)
    assert ckpt.build_model().cfg == ModelConfig.tiny().with_vertex_count(V)


def test_an_orphaned_temp_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".last.pt.tmp{dead.pid}"
    orphan.write_bytes(b"half a checkpoint")
    atomic_torch_save({"a": np.zeros(3)}, target)
    assert not orphan.exists() and raw(target)["a"].shape == (3,)


def test_a_binary_garbage_mesh_gets_a_mesh_error_not_an_import_error(tmp_path: Path) -> None:
    from engine.errors import MeshError
    from engine.io.mesh import load_mesh
    garbage = tmp_path / "scan.obj"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(MeshError, match=str(garbage.name)) as info:
        load_mesh(garbage)
    assert "ModuleNotFoundError" not in str(info.value)


@pytest.mark.parametrize("url", ["/etc/passwd", "file:///etc/passwd", "concat:/a|/b", "pipe:0",
                                 "data:video/mjpeg;base64,AAAA", "../capture/cam0.mkv"])
def test_a_camera_url_that_would_read_local_files_is_refused(url: str) -> None:
    from engine.runtime.sources import CameraSettings
    from engine.errors import SourceError
    with pytest.raises(SourceError, match="expected a device index"):
        CameraSettings(url)


@pytest.mark.parametrize("url", ["", "0", "/dev/video2", "http://127.0.0.1:8080/cam0",
                                 "RTSP://10.0.0.2/stream", "udp://0.0.0.0:5000"])
def test_cameras_and_network_streams_are_accepted(url: str) -> None:
    from engine.runtime.sources import CameraSettings
    assert CameraSettings(url).url == url


def test_a_profile_file_with_a_refused_url_drops_that_headset_only(tmp_path: Path) -> None:
    import json

    from app import profiles
    cams = lambda *urls: {"cameras": [{"url": u} for u in urls]}  # noqa: E731
    path = tmp_path / "headsets.json"
    path.write_text(json.dumps({"good": cams("0", "1", "2"), "evil": cams("0", "file:///etc/shadow", "2")}))
    store = profiles.HeadsetProfiles(path)
    assert store.get("good") is not None and store.get("evil") is None
