"""The synthetic HMC world: cameras see the intended parts, nuisances change images not ground truth,
identities move differently, and `mia synth` is deterministic and resumable."""
import dataclasses

import numpy as np
import pytest

from engine.io.capture_reader import open_capture
from engine.facemodel import load_face_model
from engine.synth.config import AppearanceConfig, SynthConfig
from engine.synth.generate import CaptureSpec, capture_plan, generate_dataset, make_world
from engine.synth.headset import make_slop
from engine.synth.identity import albedo_texture, make_identity
from engine.synth.performance import PEAKS, make_performance
from engine.synth.world import make_environment

SIZE = 64


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def world_for(model, cfg, spec):
    ident = make_identity(model, spec.identity, cfg.seed, cfg.identity)
    return make_world(model, cfg, ident, spec)


def intent(model, peak=None):
    e = np.zeros(model.expression_dim, np.float32)
    for k, w in PEAKS.get(peak, {}).items():
        e[model.expression_index(k)] = w
    return e


def topo_index(model, kit_vertices):
    pos = {k: i for i, k in enumerate(model.topology.kit_index)}
    return np.array([pos[v] for v in kit_vertices])


def test_each_camera_sees_its_part_of_the_face(model):
    cfg = SynthConfig(image_size=SIZE)
    world, headset = world_for(model, cfg, CaptureSpec(0, 0, "hs00"))
    r = world.render(intent(model), np.zeros((2, 2), np.float32), np.eye(4, dtype=np.float32), np.random.default_rng(0))
    lm = model.landmarks68
    left_eye, right_eye, mouth = [topo_index(model, lm[s]) for s in (slice(42, 48), slice(36, 42), slice(48, 68))]
    verts = model.to_topology(model.neutral)
    assert verts[left_eye, 0].mean() > 0 > verts[right_eye, 0].mean(), "landmarks 42-47 are the subject's left eye"
    cams = headset.cameras_at(SIZE)
    pupils = topo_index(model, np.concatenate([model.cornea("left"), model.cornea("right")]))
    for cam_index, seen, unseen in ((0, left_eye, mouth), (1, right_eye, mouth), (2, mouth, pupils)):
        assert r.visibility[cam_index, seen].mean() > 0.8, f"camera {cam_index} does not see its region"
        px, _ = cams[cam_index].project(r.mesh[seen])
        assert (np.abs(px - SIZE / 2) < SIZE * 0.45).all(), f"camera {cam_index}: region not framed"
        seen_elsewhere = unseen[r.visibility[cam_index, unseen]]
        if cam_index < 2:
            assert len(seen_elsewhere) == 0, f"eye camera {cam_index} sees the mouth"
        elif len(seen_elsewhere):  # the wide mouth lens may catch an eye at its rim, never near the centre
            off_centre = lambda v: np.abs(cams[2].project(r.mesh[v])[0] - SIZE / 2).max(1).min()
            assert off_centre(seen_elsewhere) > 0.4 * SIZE > np.abs(px - SIZE / 2).max(1).mean()
    assert r.images.dtype == np.uint8 and r.images.shape == (3, SIZE, SIZE)
    assert all(img.std() > 10 for img in r.images), "a camera image is flat"


def test_nuisances_change_images_not_ground_truth(model):
    cfg = SynthConfig(image_size=SIZE)
    e, g = intent(model, "smile"), np.zeros((2, 2), np.float32)
    base_world, _ = world_for(model, cfg, CaptureSpec(0, 0, "hs00", environment_seed=1))
    base = base_world.render(e, g, np.eye(4, dtype=np.float32), np.random.default_rng(0))
    slop = make_slop(np.random.default_rng(5), cfg.session)
    variants = {
        "slop": base_world.render(e, g, slop, np.random.default_rng(0)),
        "headset (placement+focal)": world_for(model, cfg, CaptureSpec(0, 0, "hs07", environment_seed=1))[0]
        .render(e, g, np.eye(4, dtype=np.float32), np.random.default_rng(0)),
        "background": world_for(model, cfg, CaptureSpec(0, 0, "hs00", environment_seed=2))[0]
        .render(e, g, np.eye(4, dtype=np.float32), np.random.default_rng(0)),
        "appearance": world_for(model, cfg, CaptureSpec(0, 0, "hs00", AppearanceConfig(beard=1.0, makeup=1.0), environment_seed=1))[0]
        .render(e, g, np.eye(4, dtype=np.float32), np.random.default_rng(0)),
    }
    for name, r in variants.items():
        np.testing.assert_array_equal(r.mesh, base.mesh, err_msg=f"{name} changed the ground-truth mesh")
        diff = np.abs(r.images.astype(int) - base.images.astype(int)).mean()
        assert diff > 2.0, f"{name} did not change the images (mean abs diff {diff:.2f})"


def test_focal_change_scales_the_face(model):
    cfg = SynthConfig(image_size=SIZE)
    wide = SynthConfig(image_size=SIZE)
    wide.headset.eye_fov_deg = cfg.headset.eye_fov_deg + 20
    spec = CaptureSpec(0, 0, "hs00")
    _, h_norm = world_for(model, cfg, spec)
    _, h_wide = world_for(model, wide, spec)
    assert h_wide.cameras[0].fx < h_norm.cameras[0].fx


def test_identities_have_their_own_look_and_expression_style(model):
    cfg = SynthConfig()
    a, b = (make_identity(model, i, 0, cfg.identity) for i in (0, 1))
    e = intent(model, "smile")
    motion_a = model.expressed(model.neutral, a.styled(e)) - model.neutral
    motion_b = model.expressed(model.neutral, b.styled(e)) - model.neutral
    assert np.abs(motion_a - motion_b).max() > 1.0, "the same intent gives the same motion on everyone"
    assert np.abs(albedo_texture(model, a) - albedo_texture(model, b)).mean() > 0.01
    bearded = albedo_texture(model, a, AppearanceConfig(beard=1.0))
    assert (bearded < albedo_texture(model, a, AppearanceConfig(beard=0.0)) - 0.05).mean() > 0.02


def test_performance_has_blinks_saccades_and_all_segments(model):
    cfg = SynthConfig()
    p = make_performance(model.expression_names, 600, 30.0, np.random.default_rng(0), cfg.performance)
    blink = p.intents[:, model.expression_index("eyeBlink_L")]
    assert (blink > 0.9).sum() >= 3 and (blink < 0.1).mean() > 0.5
    jumps = np.abs(np.diff(p.gaze[:, 0, 0]))
    assert (jumps > np.deg2rad(2)).sum() >= 5, "no saccades"
    assert p.intents.min() >= 0 and p.intents.max() <= 1
    with pytest.raises(ValueError, match="unknown performance segment"):
        make_performance(model.expression_names, 10, 30.0, np.random.default_rng(0), cfg.performance, ("dance",))


def test_environment_is_drawn_or_held_fixed():
    cfg = SynthConfig().environment
    a = make_environment(np.random.default_rng(1), cfg, 32)
    b = make_environment(np.random.default_rng(1), cfg, 32)
    np.testing.assert_array_equal(a.backgrounds, b.backgrounds)
    cfg.ambient = (0.05, 0.05)
    assert make_environment(np.random.default_rng(2), cfg, 32).ambient == 0.05


def tiny_cfg(**kw):
    return SynthConfig(identities=2, captures_per_identity=2, frames_per_capture=6, image_size=32, **kw)


def test_synth_is_deterministic_and_resumable(tmp_path):
    cfg = tiny_cfg()
    full = generate_dataset(tmp_path / "a", cfg)
    calls = {"n": 0}

    def cancel_after_some():
        calls["n"] += 1
        return calls["n"] > 9  # interrupts inside the second capture
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "b", cfg, cancel=cancel_after_some)
    captures_dir = tmp_path / "b" / "captures"
    assert sorted(p.name for p in captures_dir.iterdir()) == ["id000_c00"], "a partial capture was left behind"
    done = []
    resumed = generate_dataset(tmp_path / "b", cfg, progress=lambda k, n, name: done.append(name))
    assert done.count("id000_c00") == 1, "the finished capture was rendered again"
    assert done.count("id000_c01") == cfg.frames_per_capture + 1
    for pa, pb in zip(full, resumed):
        with open_capture(pa) as ca, open_capture(pb) as cb:
            np.testing.assert_array_equal(ca.load_all(), cb.load_all())
            np.testing.assert_array_equal(ca.meshes, cb.meshes)
            assert ca.meta.headset_id == cb.meta.headset_id


def test_capture_plan_varies_headset_appearance_and_environment():
    plan = capture_plan(SynthConfig(identities=6, captures_per_identity=3))
    assert len({s.headset for s in plan}) > 1
    assert len({s.environment_seed for s in plan}) == len(plan)
    later = [s.appearance for s in plan if s.index > 0]
    assert any(a.makeup > 0 for a in later) and any(a.beard >= 0 for a in later)
    assert all(s.appearance == plan[0].appearance for s in plan if s.index == 0)


def test_synth_refuses_a_folder_made_with_other_options(tmp_path):
    from engine.errors import ConfigError
    generate_dataset(tmp_path, tiny_cfg())
    with pytest.raises(ConfigError, match="another configuration"):
        generate_dataset(tmp_path, tiny_cfg(seed=3))


def test_compact_ground_truth_reproduces_the_stored_meshes_exactly(tmp_path):
    """Identity weights + blendshape weights + gaze give meshes.npy bit for bit, and a compact
    dataset (no meshes.npy) reads back the same meshes through Capture.meshes."""
    cfg = SynthConfig(identities=1, captures_per_identity=1, frames_per_capture=12, image_size=32, seed=4)
    full = generate_dataset(tmp_path / "full", cfg)[0]
    compact = generate_dataset(tmp_path / "compact", dataclasses.replace(cfg, store_meshes=False))[0]
    assert not (compact / "meshes.npy").exists()
    with open_capture(full) as a, open_capture(compact) as b:
        stored = np.load(full / "meshes.npy")
        assert b.meshes.shape == stored.shape and len(b.meshes) == len(stored)
        assert np.array_equal(np.asarray(b.meshes), stored)
        assert np.array_equal(b.meshes[3], stored[3]) and np.array_equal(b.meshes[[7, 2]], stored[[7, 2]])
        assert (compact / "blendshapes.npy").stat().st_size * 50 < (full / "meshes.npy").stat().st_size
        assert np.array_equal(a.load_all(), b.load_all())


def test_a_second_identity_block_extends_the_world_with_new_people_and_headsets():
    base = SynthConfig(identities=6, captures_per_identity=2, frames_per_capture=4, seed=5)
    block = dataclasses.replace(base, first_identity=6)
    a, b = capture_plan(base), capture_plan(block)
    assert [s.name for s in b][:2] == ["id006_c00", "id006_c01"] and len(b) == len(a)
    assert not {s.name for s in a} & {s.name for s in b}
    assert not {s.headset for s in a} & {s.headset for s in b}
    assert all(int(s.headset[2:]) >= 3 for s in b)  # numbered after block 0's units
    model = load_face_model()
    wide = capture_plan(dataclasses.replace(base, identities=12))
    assert wide[12].identity == 6  # the same person id006 whichever way the world was made
    assert np.array_equal(make_identity(model, 6, 5, base.identity).shape_weights,
                          make_identity(model, b[0].identity, block.seed, block.identity).shape_weights)
