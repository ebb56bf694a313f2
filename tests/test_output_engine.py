"""ARKit outputs (engine/output): the mapping table, the solver, filters, and real receivers on loopback.

Receivers: ``oscdump`` (Debian liblo-tools) for both OSC address sets, and a Live Link Face decoder
written here from the packet layout (it shares no code with engine/output/livelink.py).
"""
from __future__ import annotations

import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from engine.output.arkit import ARKIT_NAMES, TABLE, IctToArkit, unified_names, unified_values
from engine.output.endpoint import Endpoint, OutputError, check_endpoint
from engine.output.filters import Calibration, OneEuroConfig, OneEuroFilter
from engine.output.stage import OutputConfig, OutputStage
from engine.output.streamer import OutputStreamer
from osc_receiver import parse_oscdump, wait_for

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo_capture"
MODEL = ROOT / "resources" / "default_model.pt"
TIMEOUT_S = 60.0
# Live Link Face's blendshape order, typed in from Unreal's EARFaceBlendShape (not imported).
LIVE_LINK_ORDER = """EyeBlinkLeft EyeLookDownLeft EyeLookInLeft EyeLookOutLeft EyeLookUpLeft EyeSquintLeft EyeWideLeft
EyeBlinkRight EyeLookDownRight EyeLookInRight EyeLookOutRight EyeLookUpRight EyeSquintRight EyeWideRight JawForward
JawLeft JawRight JawOpen MouthClose MouthFunnel MouthPucker MouthLeft MouthRight MouthSmileLeft MouthSmileRight
MouthFrownLeft MouthFrownRight MouthDimpleLeft MouthDimpleRight MouthStretchLeft MouthStretchRight MouthRollLower
MouthRollUpper MouthShrugLower MouthShrugUpper MouthPressLeft MouthPressRight MouthLowerDownLeft MouthLowerDownRight
MouthUpperUpLeft MouthUpperUpRight BrowDownLeft BrowDownRight BrowInnerUp BrowOuterUpLeft BrowOuterUpRight CheekPuff
CheekSquintLeft CheekSquintRight NoseSneerLeft NoseSneerRight TongueOut""".split()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the table


def test_table_is_arkit_52_in_live_link_order():
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES))
    assert [n[0].upper() + n[1:] for n in ARKIT_NAMES] == LIVE_LINK_ORDER


def test_ict_to_arkit_uses_every_model_mode_but_the_extras():
    from engine.facemodel import load_face_model
    names = load_face_model().expression_names
    m = IctToArkit(names)
    used = {names[j] for j in np.flatnonzero(m.matrix.sum(0))}
    assert set(names) - used == {"cheekRaiser_L", "cheekRaiser_R", "PupilDilate_L", "PupilDilate_R"}
    w = np.zeros(len(names), np.float32)
    w[names.index("browInnerUp_L")], w[names.index("jawOpen")] = 0.6, 0.7
    a = m(w)
    assert a[ARKIT_NAMES.index("browInnerUp")] == pytest.approx(0.3)
    assert a[ARKIT_NAMES.index("jawOpen")] == pytest.approx(0.7)
    assert a[ARKIT_NAMES.index("tongueOut")] == 0.0
    assert all(r.group for r in TABLE)


def test_unified_values_combined_parameters():
    a = np.zeros(52, np.float32)
    a[ARKIT_NAMES.index("jawLeft")], a[ARKIT_NAMES.index("jawOpen")] = 0.4, 0.9
    v = unified_values(a)
    assert set(v) == set(unified_names())
    assert v["JawX"] == pytest.approx(-0.4) and v["JawOpen"] == pytest.approx(0.9)
    assert v["EyeLidLeft"] == pytest.approx(0.75)  # eyes at rest
    a[ARKIT_NAMES.index("eyeBlinkLeft")] = 1.0
    assert unified_values(a)["EyeLidLeft"] == pytest.approx(0.0)


# ----------------------------------------------------------------------------- the solver


def test_solver_recovers_known_weights_and_gaze():
    from engine.facemodel import load_face_model
    from engine.output.solver import BlendshapeSolver, SolverConfig
    fm = load_face_model()
    solver = BlendshapeSolver(fm, SolverConfig(ridge=0.0))
    rng = np.random.default_rng(0)
    neutral_full = fm.identity_shape(rng.normal(0, 1, 10).astype(np.float32))
    w = np.zeros(fm.expression_dim, np.float32)
    w[rng.choice(fm.expression_dim, 8, replace=False)] = rng.uniform(0.2, 0.9, 8)
    w[fm.expression_index("jawOpen")] = 0.5
    gaze = np.array([[0.2, -0.1], [0.15, -0.1]], np.float32)
    mesh = fm.to_topology(fm.expressed(neutral_full, w, gaze))
    neutral = fm.to_topology(neutral_full)
    got = solver.expression_weights(mesh, neutral)
    assert np.abs(got - w).max() < 0.02
    assert np.abs(solver.gaze(mesh, neutral) - gaze).max() < np.deg2rad(1.0)
    arkit = solver.arkit(mesh[None], neutral)
    assert arkit.shape == (1, 52) and arkit[0, ARKIT_NAMES.index("jawOpen")] == pytest.approx(0.5, abs=0.02)


@pytest.fixture(scope="module")
def demo_weights():
    """ARKit weights of the shipped model driving the demo capture (subject id001), and the truth."""
    from engine.io.capture_reader import open_capture
    from engine.runtime.inference import InferenceEngine
    from engine.output.solver import BlendshapeSolver
    engine = InferenceEngine(MODEL, threads=1)
    solver = BlendshapeSolver()
    with open_capture(DEMO) as cap:
        subject = engine.set_subject(cap.meta.subject_id)
        frames = list(range(0, 90, 3))
        mesh = engine.predict(np.stack([cap.frame(i) for i in frames]), subject).mesh
        truth = solver.to_arkit(np.asarray(cap.blendshapes)[frames])
    return frames, solver.arkit(mesh, subject.neutral), truth


def test_jaw_open_rises_where_the_ground_truth_rises(demo_weights):
    frames, pred, truth = demo_weights
    j = ARKIT_NAMES.index("jawOpen")
    closed, opened = truth[:, j] < 0.02, truth[:, j] > 0.3
    assert closed.sum() >= 5 and opened.sum() >= 5
    assert pred[opened, j].mean() > pred[closed, j].mean() + 0.1
    assert np.corrcoef(pred[:, j], truth[:, j])[0, 1] > 0.6
    assert ((pred >= 0) & (pred <= 1)).all()


# ----------------------------------------------------------------------------- filters and the stage


def test_one_euro_and_calibration():
    f = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.0))
    x0 = np.zeros(3)
    assert np.allclose(f(x0, 0.0), 0)
    y = f(np.ones(3), 1 / 60)
    assert 0 < y[0] < 1  # a step is smoothed ...
    for k in range(2, 200):
        y = f(np.ones(3), k / 60)
    assert np.allclose(y, 1, atol=1e-3)  # ... and converges
    c = Calibration(3)
    c.set_neutral(np.array([0.1, 0.2, 0.0]))
    c.gain[:] = 2.0
    assert np.allclose(c(np.array([0.1, 0.7, 0.3])), [0.0, 1.0, 0.6])


def test_rate_limit_and_set_neutral_with_given_times():
    cfg = OutputConfig(livelink=Endpoint(True, "127.0.0.1", free_udp_port()), rate_hz=30.0,
                       smoothing=OneEuroConfig(enabled=False))
    stage = OutputStage(cfg)
    try:
        sent = [stage.process(np.full(52, 0.2), None, k / 120).sent for k in range(120)]
        assert 29 <= sum(sent) <= 31  # 120 frames in 1 s at 120 fps, limited to 30 Hz
        stage.set_neutral(frames=4)
        for k in range(4):
            stage.process(np.full(52, 0.2), None, 2 + k / 120)
        out = stage.process(np.full(52, 0.5), None, 3.0)
        assert np.allclose(out.weights, 0.3, atol=1e-5)
        assert np.allclose(stage.calibrated_config().offset, 0.2)
    finally:
        stage.close()


@pytest.mark.parametrize("host, port, words", [("no such host!", 9000, "neither an IP address"),
                                               ("127.0.0.1", 0, "not a UDP port"),
                                               ("127.0.0.1", 70000, "not a UDP port"),
                                               ("", 9000, "no host")])
def test_bad_settings_are_messages(host, port, words):
    with pytest.raises(OutputError, match=words):
        check_endpoint(host, port, "VRChat OSC")
    stage = OutputStage(OutputConfig(vrchat=Endpoint(True, host, port)))
    try:
        assert words in stage.errors["vrchat"]
        stage.process(np.zeros(52), None, 0.0)  # no sender, no exception
    finally:
        stage.close()


def test_send_failure_is_kept_as_last_error_and_the_stage_goes_on():
    # Sending to the broadcast address without SO_BROADCAST fails at once (EACCES), like an
    # unreachable network: the error is recorded, the frame still returns, the next frame retries.
    stage = OutputStage(OutputConfig(livelink=Endpoint(True, "255.255.255.255", 11111), rate_hz=0))
    try:
        stage.process(np.zeros(52), None, 0.0)
        stage.process(np.zeros(52), None, 0.1)
        assert "Live Link: cannot send to 255.255.255.255:11111" in stage.errors["livelink"]
        assert stage.frames == 2
    finally:
        stage.close()


# ----------------------------------------------------------------------------- real receivers


@pytest.mark.parametrize("protocol, bundle", [("vrchat", False), ("babble", False), ("vrchat", True)])
def test_osc_stream_of_a_capture_reaches_oscdump(demo_weights, oscdump, protocol, bundle):
    port, lines = oscdump
    _, pred, _ = demo_weights
    cfg = OutputConfig(rate_hz=0, osc_bundle=bundle, **{protocol: Endpoint(True, "127.0.0.1", port)})
    stage = OutputStage(cfg)
    try:
        for k, w in enumerate(pred):  # one frame at a time, as a paced stream (no burst for UDP to drop)
            stage.process(w, None, k / 30)
            sent = stage.senders[protocol].messages
            assert wait_for(lambda: sum(map(len, parse_oscdump(lines()).values())) >= sent), f"frame {k}"
        assert not stage.errors
    finally:
        stage.close()
    expected = (["/avatar/parameters/v2/" + n for n in unified_names()] if protocol == "vrchat"
                else ["/" + n for n in ARKIT_NAMES])
    assert wait_for(lambda: set(expected) <= set(parse_oscdump(lines()))), \
        f"missing: {sorted(set(expected) - set(parse_oscdump(lines())))[:10]}"
    got = parse_oscdump(lines())
    signed = {"JawX", "MouthX", "EyeLeftX", "EyeRightX", "EyeY", "SmileFrownLeft", "SmileFrownRight"}
    for address in expected:
        low = -1.0 if address.rsplit("/", 1)[1] in signed else 0.0
        assert all(low - 1e-6 <= v <= 1.0 + 1e-6 for v in got[address]), address
    jaw = "/avatar/parameters/v2/JawOpen" if protocol == "vrchat" else "/jawOpen"
    assert max(got[jaw]) > 0.2  # the mouth opens in the second half of the demo capture


def decode_live_link(packet: bytes) -> dict:
    """Live Link Face packet -> fields, straight from the documented layout (big-endian)."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from(">" + fmt, packet, pos)
        pos += struct.calcsize(">" + fmt)
        return values

    def text() -> str:
        nonlocal pos
        (n,) = take("i")
        s = packet[pos:pos + n].decode("utf-8")
        pos += n
        return s

    (version,) = take("B")
    device, subject = text(), text()
    frame, subframe, rate_num, rate_den = take("ifii")
    (count,) = take("B")
    values = take(f"{count}f")
    assert pos == len(packet), "trailing bytes"
    return {"version": version, "device": device, "subject": subject, "frame": frame, "subframe": subframe,
            "rate": (rate_num, rate_den), "values": np.array(values, np.float32)}


def test_live_link_packets_round_trip_through_an_independent_receiver():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(TIMEOUT_S)
    cfg = OutputConfig(livelink=Endpoint(True, "127.0.0.1", rx.getsockname()[1]), rate_hz=0,
                       smoothing=OneEuroConfig(enabled=False), livelink_subject="Tester")
    stage = OutputStage(cfg)
    rng = np.random.default_rng(1)
    sent = [rng.uniform(0, 1, 52).astype(np.float32) for _ in range(20)]
    gaze = np.array([[0.1, -0.2], [0.12, -0.2]], np.float32)
    try:
        for k, w in enumerate(sent):
            stage.process(w, gaze, 1.0 + k / 60)
        got = [decode_live_link(rx.recvfrom(2048)[0]) for _ in sent]
    finally:
        stage.close()
        rx.close()
    for k, (w, p) in enumerate(zip(sent, got)):
        assert p["version"] == 6 and p["subject"] == "Tester" and p["device"]
        assert len(p["values"]) == 61
        assert np.array_equal(p["values"][:52], w)  # float32 round trip is exact
        assert np.allclose(p["values"][[55, 56, 58, 59]], gaze.reshape(-1))
        assert p["values"][52:55].tolist() == [0.0, 0.0, 0.0]
        assert p["frame"] == int(np.floor((1.0 + k / 60) * p["rate"][0]))


def test_streamer_never_blocks_and_closes_cleanly():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(TIMEOUT_S)
    streamer = OutputStreamer(OutputConfig(livelink=Endpoint(True, "127.0.0.1", rx.getsockname()[1]), rate_hz=0))
    try:
        for k in range(50):
            streamer.submit_weights(np.full(52, 0.25, np.float32), None, k / 60)
        assert wait_for(lambda: streamer.latest()[1] is not None)
        assert decode_live_link(rx.recvfrom(2048)[0])["version"] == 6
        streamer.configure(OutputConfig(vrchat=Endpoint(True, "bad host name!", 9000)))
        assert wait_for(lambda: "vrchat" in streamer.latest()[2]["errors"])
    finally:
        streamer.close()
        rx.close()
    assert not streamer._thread.is_alive()
