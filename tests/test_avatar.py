"""Person-specific avatars: ground-truth textures, per-identity autoencoders, codes, the avatar file."""
import numpy as np
import pytest
import torch

from app.cli import main as cli_main
from engine.avatar import (FRONTAL_VIEW, AvatarConfig, frame_texture, load_albedo, load_avatar,
                           texture_renderer, uv_mask, view_vectors)
from engine.io.layout import avatar_path
from engine.avatar_train import (AvatarTrainConfig, bake_frames, fit, subject_captures, train_avatar,
                                 train_dataset_avatars)
from engine.io.capture_reader import open_capture
from engine.errors import AvatarError, MiaError
from engine.facemodel import load_face_model
from engine.synth.config import SynthConfig
from engine.synth.generate import generate_dataset

S = 32
STEPS = 300
CFG = AvatarConfig(texture_size=S)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("avatars")
    generate_dataset(root, SynthConfig(identities=2, captures_per_identity=1, frames_per_capture=24, image_size=32))
    return root


@pytest.fixture(scope="module")
def trained(dataset):
    """Both identities' avatars and codes, as `mia avatars` makes them."""
    return train_dataset_avatars(dataset, CFG, steps=STEPS)


@pytest.fixture(scope="module")
def frames(dataset):
    """Identity 0's frames and baked textures, for training it by hand."""
    subject_dir, captures = next(iter(subject_captures(dataset).items()))
    return bake_frames(subject_dir, captures, S, AvatarTrainConfig(), np.random.default_rng(0))


def texels_of(vertices: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: texels holding the UVs of the given model-topology vertices (and the face)."""
    uv = load_face_model().topology.uvs[vertices]
    out = np.zeros((size, size), bool)
    rows, cols = ((1 - uv[:, 1]) * size).astype(int), (uv[:, 0] * size).astype(int)
    out[np.clip(rows, 0, size - 1), np.clip(cols, 0, size - 1)] = True
    return out & uv_mask(size)


def masked_mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float((((a - b) * mask) ** 2).sum() / (mask.sum() * len(b)))


def principal(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal scores (T, k) and directions (k, D) of a (T, D) code set."""
    centred = codes - codes.mean(0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    return u * s, vt


def test_baked_texture_follows_expression_and_view(dataset):
    model = load_face_model()
    renderer = texture_renderer(load_albedo(dataset / "subjects" / "id000"))
    weights = np.zeros(model.expression_dim, np.float32)
    weights[model.expression_index("jawOpen")] = 1.0
    neutral = model.to_topology(model.neutral)
    jaw_open = model.to_topology(model.expressed(model.neutral, weights))
    rest = frame_texture(renderer, neutral, FRONTAL_VIEW, S)
    opened = frame_texture(renderer, jaw_open, FRONTAL_VIEW, S)
    turned = frame_texture(renderer, neutral, view_vectors(np.array(25.0), np.array(0.0)), S)
    renderer.release()
    mask = uv_mask(S)
    assert rest.shape == (S, S) and rest.dtype == np.float32
    assert 0.0 <= rest.min() and rest.max() <= 1.0 and rest[mask].mean() > 0.1
    assert not rest[~mask].any(), "texels off the face stay empty"
    mouth = texels_of(model.region_masks["mouth"], S)
    forehead = texels_of(neutral[:, 1] > model.eye_centre("left")[1] + 15.0, S)
    change = np.abs(opened - rest)
    assert change[mouth].mean() > 0.02
    assert change[mouth].mean() > 5 * change[forehead].mean(), "opening the jaw shades the mouth, not the forehead"
    assert np.abs(turned - rest)[mask].max() > 0.05, "the texture is view dependent"


def test_autoencoder_reconstruction_improves_with_training(trained):
    for subject_id, path in trained.items():
        errors = load_avatar(path).provenance["errors"]
        assert errors["after"]["texture_mse"] < 0.5 * errors["before"]["texture_mse"], subject_id
        assert errors["after"]["geometry_mse_mm2"] < 0.5 * errors["before"]["geometry_mse_mm2"], subject_id


def test_codes_are_written_for_every_capture(dataset, trained):
    for subject_dir, captures in subject_captures(dataset).items():
        avatar = load_avatar(subject_dir)
        assert avatar.subject_id == subject_dir.name and avatar_path(subject_dir).stat().st_size < 3e6
        for path in captures:
            with open_capture(path) as cap:  # the capture reader validates codes.npy too
                codes, meshes = np.array(cap.codes), np.array(cap.meshes)
            assert codes.shape == (24, 256) and codes.dtype == np.float32 and np.isfinite(codes).all()
            renderer = texture_renderer(load_albedo(subject_dir))
            tex = np.stack([frame_texture(renderer, m, FRONTAL_VIEW, S) for m in meshes[:4]])
            renderer.release()
            np.testing.assert_allclose(codes[:4], avatar.encode(meshes[:4], tex), atol=1e-4)
            assert codes.std(0).max() > 1e-3, "codes vary with the expression"
            assert 0.5 < np.sqrt((codes ** 2).mean()) < 2.0, "codes are O(1), as MIA's code loss assumes"


def test_decode_of_encode_reconstructs_the_frame(dataset, trained):
    avatar = load_avatar(dataset / "subjects" / "id001" / "avatar")
    with open_capture(dataset / "captures" / "id001_c00") as cap:
        meshes = np.array(cap.meshes)
    renderer = texture_renderer(load_albedo(dataset / "subjects" / "id001"))
    view = view_vectors(np.array(-15.0), np.array(10.0))
    frontal = np.stack([frame_texture(renderer, m, FRONTAL_VIEW, S) for m in meshes])
    turned = np.stack([frame_texture(renderer, m, view, S) for m in meshes])
    renderer.release()
    z = avatar.encode(meshes, frontal)
    assert z.shape == (24, avatar.latent_dim)
    out = avatar.decode(z, FRONTAL_VIEW)
    assert out.shape == (24, S, S) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    mask = avatar.uv_mask
    mean = frontal.mean(0, keepdims=True)
    assert masked_mse(out, frontal, mask) < 0.5 * masked_mse(mean, frontal, mask), "better than the mean face"
    assert masked_mse(avatar.decode(z, view), turned, mask) < masked_mse(out, turned, mask), "D uses v"
    geo = avatar.decode_geometry(torch.from_numpy(z))
    assert np.sqrt(((geo - meshes) ** 2).mean()) < 0.3 * np.sqrt(((avatar.neutral - meshes) ** 2).mean())


def test_identities_trained_apart_have_different_latent_axes(frames):
    """The property MIA relies on: the same frames and two inits give the same expression
    information along unrelated latent axes, so codes need a per-identity map (F_i, P_i)."""
    codes = []
    for seed in (1, 2, 1):
        model, _ = fit(frames, CFG, 40, AvatarTrainConfig(), seed)
        with torch.no_grad():
            codes.append(model.encode(frames.offsets_cm, frames.frontal).numpy())
    np.testing.assert_allclose(codes[0], codes[2], atol=1e-5, err_msg="training is reproducible from its seed")
    (scores_a, axes_a), (scores_b, axes_b) = principal(codes[0]), principal(codes[1])
    assert abs(axes_a[0] @ axes_b[0]) < 0.5, "the leading expression axis points elsewhere"
    centred_a, centred_b = codes[0] - codes[0].mean(0), codes[1] - codes[1].mean(0)
    assert np.linalg.norm(centred_a - centred_b) > np.linalg.norm(centred_a), "codes are not interchangeable"
    x = np.c_[scores_b[:, :3], np.ones(len(scores_b))]
    fit_a = x @ np.linalg.lstsq(x, scores_a[:, 0], rcond=None)[0]
    r2 = 1 - ((scores_a[:, 0] - fit_a) ** 2).sum() / ((scores_a[:, 0] - scores_a[:, 0].mean()) ** 2).sum()
    assert r2 > 0.9, "yet one identity's leading code is a linear function of the other's"


def test_rerun_skips_finished_identities_and_fills_missing_codes(dataset, trained):
    avatars = {s: avatar_path(s).stat().st_mtime_ns for s in subject_captures(dataset)}
    codes = dataset / "captures" / "id000_c00" / "codes.npy"
    before = np.load(codes)
    codes.unlink()
    assert cli_main(["avatars", str(dataset), "--steps", str(STEPS), "--texture-size", str(S)]) == 0
    assert {s: avatar_path(s).stat().st_mtime_ns for s in avatars} == avatars, "no avatar was retrained"
    np.testing.assert_allclose(np.load(codes), before, atol=1e-5)


def test_cancel_leaves_no_avatar(dataset, tmp_path):
    subject_dir, captures = next(iter(subject_captures(dataset).items()))
    copy = tmp_path / subject_dir.name
    copy.mkdir()
    for name in ("neutral.obj", "albedo.png", "subject.json"):
        (copy / name).write_bytes((subject_dir / name).read_bytes())
    with pytest.raises(KeyboardInterrupt):
        train_avatar(copy, captures, CFG, steps=10, cancel=lambda: True)
    assert not (copy / "avatar").exists() or not any((copy / "avatar").iterdir())


def test_load_avatar_errors_are_clear(tmp_path):
    with pytest.raises(AvatarError, match="no avatar found"):
        load_avatar(tmp_path / "nobody")
    bad = tmp_path / "avatar.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(AvatarError, match="not a readable avatar file"):
        load_avatar(bad)
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(MiaError, match="not an avatar file"):
        load_avatar(tmp_path)
    with pytest.raises(AvatarError, match="power of two"):
        AvatarConfig(texture_size=48)
