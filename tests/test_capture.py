"""The HMC capture folder: bit-exact round trips, random access, errors that name the culprit."""
import json

import numpy as np
import pytest

from engine.io.capture_schema import CAMERA_NAMES, CameraCalib, CaptureMeta, TopologyRef, read_meta
from engine.io.capture_writer import CaptureWriter, write_capture
from engine.io.capture_reader import list_captures, open_capture
from engine.errors import CaptureError, MiaError

T, H, W, V, E = 3, 32, 32, 10, 5


def make_meta(storage="ffv1", topology=True):
    cams = [CameraCalib(name, W, H, 40.0 + c, 41.0, 16.0, 15.5, [0.1, -0.01, 0.001],
                        np.eye(3), [c * 30.0 - 30.0, -20.0, 40.0])
            for c, name in enumerate(CAMERA_NAMES)]
    return CaptureMeta("s01", "hmc-a", "sess-1", 90.0, T, (H, W), cams, storage,
                       {"generator": "test", "seed": np.int64(7)},
                       TopologyRef("tiny", V, "abc123") if topology else None)


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, 3, H, W), dtype=np.uint8)
    arrays = dict(meshes=rng.normal(size=(T, V, 3)).astype(np.float32),
                  codes=rng.normal(size=(T, 256)).astype(np.float32),
                  expressions=rng.random((T, E)).astype(np.float32),
                  timestamps=np.arange(T) / 90.0,
                  visibility=rng.integers(0, 2, (T, 3, V)).astype(np.uint8),
                  head_pose=np.tile(np.eye(4, dtype=np.float32), (T, 1, 1)))
    return frames, arrays


def write(path, storage="ffv1", seed=0, with_arrays=True, **kw):
    frames, arrays = make_data(seed)
    write_capture(path, make_meta(storage, **kw), frames, **(arrays if with_arrays else {}))
    return frames, arrays


def edit_json(path, change):
    d = json.loads((path / "capture.json").read_text())
    change(d)
    (path / "capture.json").write_text(json.dumps(d))


def open_error(path) -> str:
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    assert isinstance(info.value, (MiaError, ValueError))
    return str(info.value)


@pytest.mark.parametrize("storage", ["ffv1", "png"])
def test_round_trip_is_bit_exact(tmp_path, storage):
    path = tmp_path / "cap"
    frames, arrays = write(path, storage)
    with open_capture(path) as cap:
        assert cap.meta == make_meta(storage)
        assert cap.meta.cameras[0].K[0, 0] == 40.0 and len(cap) == T
        np.testing.assert_array_equal(cap.load_all(), frames)
        for i in [2, 0, 1, 1, 2, 0, 0]:
            np.testing.assert_array_equal(cap.frame(i), frames[i])
        np.testing.assert_array_equal(np.stack(list(cap.frames(1, 3))), frames[1:])
        for name, a in arrays.items():
            got = getattr(cap, name)
            assert got.dtype == a.dtype, name
            np.testing.assert_array_equal(got, a)
    assert read_meta(path).provenance == {"generator": "test", "seed": 7}


def test_arrays_are_optional(tmp_path):
    write(tmp_path / "cap", with_arrays=False)
    with open_capture(tmp_path / "cap") as cap:
        assert cap.meshes is None and cap.codes is None and cap.timestamps is None


def test_list_captures_skips_partial_folders(tmp_path):
    write(tmp_path / "a" / "s1")
    write(tmp_path / "b", with_arrays=False)
    (tmp_path / ".c.partial-xyz").mkdir()
    (tmp_path / ".c.partial-xyz" / "capture.json").write_text("{}")
    assert list_captures(tmp_path) == [tmp_path / "a" / "s1", tmp_path / "b"]


@pytest.mark.parametrize("storage,victim", [("ffv1", "cam1.mkv"), ("png", "cam1/000002.png")])
def test_missing_camera_file(tmp_path, storage, victim):
    path = tmp_path / "cap"
    write(path, storage, with_arrays=False)
    (path / victim).unlink()
    assert victim.split("/")[-1] in open_error(path)


@pytest.mark.parametrize("storage,culprit", [("ffv1", "cam0.mkv"), ("png", "cam0")])
def test_frame_count_mismatch(tmp_path, storage, culprit):
    path = tmp_path / "cap"
    write(path, storage, with_arrays=False)
    edit_json(path, lambda d: d.update(frame_count=4))
    message = open_error(path)
    assert culprit in message and "frame_count" in message


def test_corrupt_json_names_line_and_column(tmp_path):
    path = tmp_path / "cap"
    write(path, with_arrays=False)
    (path / "capture.json").write_text('{\n  "fps": 90,\n  oops\n}')
    message = open_error(path)
    assert "capture.json" in message and "line 3" in message and "column" in message


@pytest.mark.parametrize("change,field", [
    (lambda d: d.pop("fps"), "'fps'"),
    (lambda d: d.update(frame_count="3"), "'frame_count'"),
    (lambda d: d["cameras"][1].pop("fx"), "'cameras[1].fx'"),
    (lambda d: d["cameras"][2].update(R=[[1, 0], [0, 1]]), "'cameras[2].R'"),
    (lambda d: d.update(storage="mp4"), "'storage'"),
])
def test_bad_field_is_named(tmp_path, change, field):
    path = tmp_path / "cap"
    write(path, with_arrays=False)
    edit_json(path, change)
    message = open_error(path)
    assert "capture.json" in message and field in message


def test_vertex_count_must_match_topology(tmp_path):
    path = tmp_path / "cap"
    write(path)
    edit_json(path, lambda d: d["topology"].update(vertex_count=V + 2))
    message = open_error(path)
    assert "meshes.npy" in message and "topology.vertex_count" in message


def test_nan_in_meshes_names_file_and_frame(tmp_path):
    path = tmp_path / "cap"
    _, arrays = write(path)
    arrays["meshes"][2, 4, 1] = np.nan
    np.save(path / "meshes.npy", arrays["meshes"])
    message = open_error(path)
    assert "meshes.npy" in message and "frame 2" in message


def test_writer_rejects_bad_arrays_before_writing(tmp_path):
    frames, arrays = make_data()
    arrays["meshes"][1, 0, 0] = np.inf
    with pytest.raises(CaptureError, match="mesh for frame 1"):
        write_capture(tmp_path / "cap", make_meta(), frames, meshes=arrays["meshes"])
    with pytest.raises(CaptureError, match="mesh for frame 0 has shape"):
        write_capture(tmp_path / "cap", make_meta(), frames, meshes=np.zeros((T, V + 1, 3)))
    assert list(tmp_path.iterdir()) == []


def test_exception_in_writer_leaves_nothing(tmp_path):
    frames, _ = make_data()
    with pytest.raises(RuntimeError):
        with CaptureWriter(tmp_path / "cap", make_meta()) as writer:
            writer.append(tuple(frames[0]))
            raise RuntimeError("boom")
    with pytest.raises(CaptureError, match="2 frames appended"):
        with CaptureWriter(tmp_path / "cap", make_meta()) as writer:
            writer.append(tuple(frames[0]), code=np.zeros(256))
            writer.append(tuple(frames[1]), code=np.zeros(256))
    with pytest.raises(CaptureError, match="same ones for every frame"):
        with CaptureWriter(tmp_path / "cap", make_meta()) as writer:
            writer.append(tuple(frames[0]), code=np.zeros(256))
            writer.append(tuple(frames[1]))
    assert list(tmp_path.iterdir()) == []


def test_existing_capture_is_not_overwritten(tmp_path):
    path = tmp_path / "cap"
    first, _ = write(path, seed=0)
    with pytest.raises(CaptureError, match="already exists"):
        write(path, seed=1)
    with open_capture(path) as cap:
        np.testing.assert_array_equal(cap.load_all(), first)
    second, _ = make_data(seed=1)
    write_capture(path, make_meta("png"), second, overwrite=True)
    with open_capture(path) as cap:
        assert cap.meta.storage == "png" and cap.meshes is None
        np.testing.assert_array_equal(cap.load_all(), second)
    assert [p.name for p in tmp_path.iterdir()] == ["cap"]
    other = tmp_path / "not_a_capture"
    other.mkdir()
    with pytest.raises(CaptureError, match="not a capture folder"):
        write_capture(other, make_meta(), second, overwrite=True)
