"""The 3D augmentation layer: exact when nothing changes, geometrically right under a focal change,
better than any 2-D affine warp against the synthetic world's own render of a moved head."""
import dataclasses
import pickle
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from engine.io.capture_reader import open_capture
from engine.facemodel import load_face_model
from engine.training.augment import AugmentConfig, Augmenter, hole_caps, moved_camera, perturbed_cameras
from engine.camera import camera_from_calib
from engine.synth.config import SynthConfig
from engine.synth.generate import capture_plan, generate_dataset, make_world
from engine.synth.identity import make_identity

SIZE = 48
STILL = AugmentConfig(probability=1.0, rot_deg=0.0, trans_mm=0.0, focal_scale=0.0, center_px=0.0,
                      background_probability=0.0, brightness=0.0, noise=0.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    cfg = SynthConfig(identities=1, captures_per_identity=1, frames_per_capture=4, image_size=SIZE)
    return cfg, generate_dataset(tmp_path_factory.mktemp("augment"), cfg)[0]


@pytest.fixture(scope="module")
def frame(dataset):
    """Frame 1 of the capture: images (3, H, W), mesh (V, 3), the cameras that saw it, visibility."""
    with open_capture(dataset[1]) as cap:
        cams = [camera_from_calib(c, cap.head_pose[1]) for c in cap.meta.cameras]
        return cap.frame(1), np.asarray(cap.meshes[1]), cams, np.asarray(cap.visibility[1], bool)


def make_augmenter(cfg: AugmentConfig = STILL) -> Augmenter:
    return Augmenter(cfg, load_face_model().topology.faces, SIZE)


def face_region(cover: np.ndarray) -> np.ndarray:
    """Face pixels away from the face's outline (where a pixel mixes face and background)."""
    return np.stack([cv2.erode(c.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for c in cover])


def test_holes_are_capped():
    caps = hole_caps(load_face_model().topology.faces)
    assert len(caps.loops) >= 3  # the mouth and both eye openings at least
    assert caps.faces.max() + 1 == load_face_model().topology.faces.max() + 1 + len(caps.t)


def test_no_change_reproduces_the_input(frame):
    images, mesh, cams, vis = frame
    aug = make_augmenter()
    _, cover = aug.rerender(images, mesh, cams, cams)
    inside = face_region(cover)
    for visibility in (None, vis):  # own depth pass, or the capture's stored visibility
        out = aug(images, mesh, cams, np.random.default_rng(0), visibility)
        diff = np.abs(out.astype(float) - images)
        assert inside.sum() > 0.3 * inside.size
        assert diff[inside].mean() < 2.0
        assert np.percentile(diff[inside], 99) < 20


def test_focal_change_scales_about_the_principal_point(frame):
    images, mesh, cams, _ = frame
    s = 1.15
    out, cover = make_augmenter().rerender(images, mesh, cams, [moved_camera(c, np.eye(4), focal=s) for c in cams])
    for i, cam in enumerate(cams):
        # distortion acts on normalised rays, so a focal change is an exact scaling about (cx, cy)
        c = np.array([cam.cx, cam.cy]) - 0.5
        A = np.hstack([np.eye(2) * s, (c - s * c)[:, None]])
        expect = cv2.warpAffine(images[i].astype(np.float32), A, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
        inside = face_region(cover[i:i + 1])[0]
        assert np.abs(out[i] - expect)[inside].mean() < 3.0
        src_px, _ = cam.project(mesh)
        dst_px, _ = moved_camera(cam, np.eye(4), focal=s).project(mesh)
        assert np.allclose(dst_px - c - 0.5, s * (src_px - c - 0.5), atol=1e-3)


def render_world(dataset, frame_index: int):
    """The synthetic world of the capture, lit by ambient light only: the LED moves with the camera,
    so its shading changes are not a geometric effect and would blur the comparison."""
    cfg, path = dataset
    model = load_face_model()
    spec = capture_plan(cfg)[0]
    world, headset = make_world(model, cfg, make_identity(model, spec.identity, cfg.seed, cfg.identity), spec)
    world.sensor_cfg = dataclasses.replace(cfg.sensor, read_noise=0.0, shot_noise=0.0)
    world.headset.led_power[:] = 0.0
    world.environment.ambient = 0.7
    with open_capture(path) as cap:
        pose, intent = cap.head_pose[frame_index].astype(np.float64), cap.expressions[frame_index]
    gaze = np.zeros((2, 2), np.float32)
    return lambda head_pose: world.render(intent, gaze, head_pose, np.random.default_rng(0)), headset, pose


def test_3d_rerender_beats_best_2d_affine_warp(dataset):
    render, headset, pose = render_world(dataset, 2)
    src = render(pose)
    pivot = src.mesh.mean(0).astype(np.float64)
    R, _ = cv2.Rodrigues(np.deg2rad([0.0, 8.0, 0.0]))  # the head turns 8 degrees inside the headset
    motion = np.eye(4)
    motion[:3, :3], motion[:3, 3] = R, pivot - R @ pivot
    truth = render(pose @ motion)
    sources = headset.cameras_at(SIZE, pose)
    targets = [moved_camera(c, motion) for c in sources]
    out, cover = make_augmenter().rerender(src.images, src.mesh, sources, targets)
    inside = face_region(cover)
    err3d, err2d = [], []
    for i in range(3):
        seen = src.visibility[i] & truth.visibility[i]
        a, _ = sources[i].project(src.mesh[seen])
        b, _ = targets[i].project(src.mesh[seen])
        A, _ = cv2.estimateAffine2D(a, b, method=cv2.LMEDS)
        A[:, 2] += A[:, :2] @ [0.5, 0.5] - 0.5  # pixel-centre convention of warpAffine
        warped = cv2.warpAffine(src.images[i].astype(np.float32), A, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)
        gt = truth.images[i].astype(np.float32)
        err3d.append(np.abs(out[i] - gt)[inside[i]].mean())
        err2d.append(np.abs(warped - gt)[inside[i]].mean())
    assert all(e3 < e2 for e3, e2 in zip(err3d, err2d)), (err3d, err2d)
    assert np.mean(err3d) < 0.75 * np.mean(err2d), (err3d, err2d)


def test_output_type_shape_and_probability(frame):
    images, mesh, cams, _ = frame
    aug = make_augmenter(AugmentConfig(probability=1.0))
    batch = aug.augment_batch(np.stack([images] * 2), np.stack([mesh] * 2), [cams] * 2, np.random.default_rng(0))
    assert batch.dtype == np.uint8 and batch.shape == (2, 3, SIZE, SIZE)
    assert not np.array_equal(batch[0], images) and not np.array_equal(batch[0], batch[1])
    for cfg in (AugmentConfig(probability=0.0), AugmentConfig(enabled=False)):
        assert np.array_equal(make_augmenter(cfg)(images, mesh, cams, np.random.default_rng(0)), images)
    with pytest.raises(ValueError, match="48x48"):
        aug(images[:, :32, :32], mesh, cams, np.random.default_rng(0))


def test_background_replaced_off_the_face(frame):
    images, mesh, cams, _ = frame
    aug = make_augmenter(dataclasses.replace(STILL, background_probability=1.0))
    _, cover = aug.rerender(images, mesh, cams, cams)
    off_face = ~np.stack([cv2.dilate(c.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for c in cover])
    inside = face_region(cover)
    a, b = (aug(images, mesh, cams, np.random.default_rng(seed)).astype(float) for seed in (1, 2))
    for out in (a, b):
        assert np.abs(out - images)[inside].mean() < 2.0
        assert np.abs(out - images)[off_face].mean() > 5.0
    assert np.abs(a - b)[off_face].mean() > 5.0


def test_deterministic_for_a_seed_picklable_and_per_thread(frame):
    images, mesh, cams, _ = frame
    aug = make_augmenter(AugmentConfig(probability=1.0))
    first = aug(images, mesh, cams, np.random.default_rng(7))
    assert np.array_equal(first, aug(images, mesh, cams, np.random.default_rng(7)))
    assert not np.array_equal(first, aug(images, mesh, cams, np.random.default_rng(8)))
    clone = pickle.loads(pickle.dumps(aug))  # data-loader workers get a copy and make their own renderer
    assert np.array_equal(first, clone(images, mesh, cams, np.random.default_rng(7)))
    with ThreadPoolExecutor(2) as pool:  # each thread draws with its own GL context
        outs = list(pool.map(lambda seed: aug(images, mesh, cams, np.random.default_rng(seed)), [7, 7]))
    assert all(np.array_equal(first, out) for out in outs)


def test_perturbed_cameras(frame):
    _, mesh, cams, _ = frame
    same = perturbed_cameras(cams, np.random.default_rng(0), STILL)
    for a, b in zip(cams, same):
        assert np.allclose(a.mv, b.mv, atol=1e-5) and (a.fx, a.cx, a.cy) == pytest.approx((b.fx, b.cx, b.cy))
    moved = perturbed_cameras(cams, np.random.default_rng(0), AugmentConfig(), pivot=mesh.mean(0))
    motions = [np.linalg.inv(a.mv.astype(np.float64)) @ b.mv for a, b in zip(cams, moved)]
    assert all(np.allclose(m, motions[0], atol=1e-3) for m in motions)  # one head motion, all cameras
    assert not np.allclose(motions[0], np.eye(4), atol=1e-3)
    assert len({round(b.fx / a.fx, 6) for a, b in zip(cams, moved)}) == 3  # focal changes per camera
    independent = perturbed_cameras(cams, np.random.default_rng(0), AugmentConfig(shared_pose=False))
    m1, m2 = (np.linalg.inv(cams[i].mv.astype(np.float64)) @ independent[i].mv for i in (0, 1))
    assert not np.allclose(m1, m2, atol=1e-3)
