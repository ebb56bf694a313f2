"""`mia blendshapes` and `mia stream` end to end, as subprocesses, with real receivers on loopback; the
one-line error checks call the CLI's ``main(argv)`` in-process (nothing is streamed there).

Receivers: a Live Link Face decoder written here from the packet layout (no code shared with
engine/output/livelink.py), ``oscdump`` (Debian liblo-tools) for both OSC address sets, and the
stand-in MJPEG headset (app/fake_headset.py) for the live-camera path. Every receiver binds port 0
first and the sender is given the port it got, so no port is guessed; every process is bounded by a
timeout and killed in ``finally``. Nothing asserts wall-clock times.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from osc_receiver import WAIT_S, parse_oscdump, wait_for

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "resources" / "demo_capture"
TIMEOUT_S = 240.0  # one CLI run: python + torch + the model on a busy 2-core machine, with room to spare
# ARKit's 52 names in Live Link Face order, typed in from Unreal's EARFaceBlendShape (not imported).
ARKIT = """eyeBlinkLeft eyeLookDownLeft eyeLookInLeft eyeLookOutLeft eyeLookUpLeft eyeSquintLeft eyeWideLeft
eyeBlinkRight eyeLookDownRight eyeLookInRight eyeLookOutRight eyeLookUpRight eyeSquintRight eyeWideRight jawForward
jawLeft jawRight jawOpen mouthClose mouthFunnel mouthPucker mouthLeft mouthRight mouthSmileLeft mouthSmileRight
mouthFrownLeft mouthFrownRight mouthDimpleLeft mouthDimpleRight mouthStretchLeft mouthStretchRight mouthRollLower
mouthRollUpper mouthShrugLower mouthShrugUpper mouthPressLeft mouthPressRight mouthLowerDownLeft mouthLowerDownRight
mouthUpperUpLeft mouthUpperUpRight browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff
cheekSquintLeft cheekSquintRight noseSneerLeft noseSneerRight tongueOut""".split()
JAW = ARKIT.index("jawOpen")


def mia_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def mia_env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, MIA_STUDIO_HOME=str(tmp_path / "home"), MIA_STUDIO_THREADS="1", PYTHONUNBUFFERED="1")


def mia(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs `mia ARGS` to completion (killed after TIMEOUT_S)."""
    return subprocess.run(mia_command(*args), cwd=ROOT, env=mia_env(tmp_path), capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def mia_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                   *args: str) -> SimpleNamespace:
    """`mia ARGS` as ``app.cli.main(argv)`` in this process, for runs that end before streaming starts
    (errors): the same return code and output a subprocess gives, without starting Python and torch."""
    from app.cli import main
    for key, value in mia_env(tmp_path).items():
        if key.startswith("MIA_STUDIO_") or key == "PYTHONUNBUFFERED":
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def true_jaw_open() -> np.ndarray:
    """The demo capture's ground-truth jawOpen, straight from its files (ICT's mode of the same name)."""
    from engine.io.capture_reader import open_capture
    from engine.facemodel import load_face_model
    with open_capture(DEMO) as cap:
        return np.asarray(cap.blendshapes)[:, load_face_model().expression_names.index("jawOpen")]


# ----------------------------------------------------------------------------- a Live Link receiver


def decode_live_link(packet: bytes) -> dict:
    """Live Link Face packet -> fields, from the documented layout: big-endian; uint8 version; int32
    length + UTF-8 device id; int32 length + UTF-8 subject; int32 frame, float32 sub-frame, int32 rate
    numerator and denominator; uint8 count; count float32 (52 ARKit, head ypr, left eye ypr, right eye ypr)."""
    version = packet[0]
    pos = 1
    strings = []
    for _ in range(2):
        (n,) = struct.unpack_from(">i", packet, pos)
        strings.append(packet[pos + 4:pos + 4 + n].decode("utf-8"))
        pos += 4 + n
    frame, subframe, num, den = struct.unpack_from(">ifii", packet, pos)
    pos += 16
    count = packet[pos]
    values = np.frombuffer(packet, ">f4", count, pos + 1).astype(np.float32)
    assert pos + 1 + 4 * count == len(packet), "trailing or missing bytes"
    return {"version": version, "device": strings[0], "subject": strings[1], "frame": frame,
            "subframe": subframe, "rate": (num, den), "values": values}


class LiveLinkReceiver:
    """A UDP socket on 127.0.0.1 (port chosen by the kernel) drained by a thread into ``packets``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self.closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.packets.append(self.sock.recv(4096))
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self) -> list[dict]:
        """Stops (after taking what is still queued) and decodes every packet."""
        wait_for(lambda: False, timeout=0.2)  # let the thread empty the socket
        self._stop.set()
        self._thread.join(WAIT_S)
        self.sock.close()
        self.closed = True
        return [decode_live_link(p) for p in self.packets]


@pytest.fixture
def livelink():
    rx = LiveLinkReceiver()
    try:
        yield rx
    finally:
        if not rx.closed:
            rx.close()


# ----------------------------------------------------------------------------- oscdump


# ----------------------------------------------------------------------------- mia blendshapes


def test_blendshapes_csv_of_the_demo_capture(tmp_path):
    out = tmp_path / "w" / "weights.csv"
    out.parent.mkdir()
    out.write_text("old contents\n")
    r = mia(tmp_path, "blendshapes", str(DEMO), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["weights.csv"]  # replaced, no temp file left
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, data = rows[0], np.array(rows[1:], np.float64)
    gaze = ["leftEyeYaw", "leftEyePitch", "rightEyeYaw", "rightEyePitch"]
    assert header[:2 + 52 + 4] == ["frame", "time_s", *ARKIT, *gaze]
    assert header[2 + 52 + 4:] == [f"true_{n}" for n in ARKIT + gaze]
    assert data.shape == (90, len(header)) and np.array_equal(data[:, 0], np.arange(90))
    pred, truth = data[:, 2:54], data[:, 58:110]
    assert ((pred >= 0) & (pred <= 1)).all() and ((truth >= 0) & (truth <= 1)).all()
    assert np.isfinite(data).all()
    assert np.allclose(truth[:, JAW], true_jaw_open(), atol=1e-5)
    opened, closed = truth[:, JAW] > 0.3, truth[:, JAW] < 0.02
    assert opened.sum() >= 5 and closed.sum() >= 5
    assert pred[opened, JAW].mean() > pred[closed, JAW].mean() + 0.1
    assert np.corrcoef(pred[:, JAW], truth[:, JAW])[0, 1] > 0.6


def test_blendshapes_failure_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "weights.csv"
    out.write_text("old contents\n")
    r = mia_in_process(tmp_path, monkeypatch, capsys, "blendshapes", str(DEMO), "--out", str(out),
                       "--subject", "nobody")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("mia blendshapes: error: unknown subject 'nobody'"), r.stderr
    assert "Traceback" not in r.stderr
    assert out.read_text() == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["weights.csv"]


# ----------------------------------------------------------------------------- mia stream


def test_stream_of_a_capture_to_a_live_link_receiver(tmp_path, livelink):
    frames = 75  # the mouth opens from frame 67 of the demo capture
    stats = tmp_path / "stats.json"
    r = mia(tmp_path, "stream", str(DEMO), "--livelink", f"127.0.0.1:{livelink.port}", "--frames", str(frames),
            "--fps", "0", "--rate", "0", "--no-smoothing", "--json", str(stats))
    packets = livelink.close()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert f"mia stream: {frames} frames in" in r.stdout and f"Live Link Face {frames}" in r.stdout
    summary = json.loads(stats.read_text())
    assert summary["frames"] == frames and summary["packets"] == {"livelink": frames} and not summary["errors"]
    assert len(packets) == frames
    for p in packets:
        assert p["version"] == 6 and p["subject"] == "MIAStudio" and p["device"]
        assert len(p["values"]) == 61 and np.isfinite(p["values"]).all()
        assert ((p["values"][:52] >= 0) & (p["values"][:52] <= 1)).all()
        assert p["values"][52:55].tolist() == [0.0, 0.0, 0.0]  # no head pose: the headset moves with the head
        assert p["rate"][0] > 0 and p["rate"][1] == 1
    assert [p["frame"] for p in packets] == sorted(p["frame"] for p in packets)
    jaw, truth = np.array([p["values"][JAW] for p in packets]), true_jaw_open()[:frames]
    assert jaw[truth > 0.3].mean() > jaw[truth < 0.02].mean() + 0.1
    assert np.corrcoef(jaw, truth)[0, 1] > 0.6


def test_stream_reaches_oscdump_with_vrchat_and_babble_addresses(tmp_path, oscdump):
    from engine.output.arkit import unified_names  # the expected address list; values are checked here
    port, lines = oscdump
    r = mia(tmp_path, "stream", str(DEMO), "--osc", f"127.0.0.1:{port}", "--babble", f"127.0.0.1:{port}",
            "--frames", "8", "--fps", "0", "--rate", "0")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    vrchat = ["/avatar/parameters/v2/" + n for n in unified_names()]
    babble = ["/" + n for n in ARKIT]
    expected = set(vrchat) | set(babble)
    assert wait_for(lambda: expected <= set(parse_oscdump(lines()))), \
        f"missing: {sorted(expected - set(parse_oscdump(lines())))[:10]}"
    got = parse_oscdump(lines())
    signed = {"JawX", "MouthX", "EyeLeftX", "EyeRightX", "EyeY", "SmileFrownLeft", "SmileFrownRight"}
    for address in expected:
        low = -1.0 if address.rsplit("/", 1)[1] in signed else 0.0
        assert all(low - 1e-6 <= v <= 1.0 + 1e-6 for v in got[address]), address


def test_stream_from_three_live_cameras(tmp_path, livelink):
    from app.fake_headset import FakeHeadset, capture_frames
    headset = FakeHeadset(capture_frames(DEMO), fps=30.0).start()  # binds port 0
    try:
        r = mia(tmp_path, "stream", *headset.urls, "--subject", "id001", "--livelink",
                f"127.0.0.1:{livelink.port}", "--frames", "10", "--rate", "0")
    finally:
        headset.stop()
    packets = livelink.close()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert len(packets) == 10 and all(p["version"] == 6 for p in packets)


def test_stream_cameras_turned_mirrored_and_cropped(tmp_path, livelink):
    from app.fake_headset import FakeHeadset, capture_frames
    headset = FakeHeadset(capture_frames(DEMO), fps=30.0).start()
    stats = tmp_path / "stats.json"
    try:
        r = mia(tmp_path, "stream", *headset.urls, "--subject", "id001", "--livelink", f"127.0.0.1:{livelink.port}",
                "--frames", "3", "--rate", "0", "--rotate", "0", "90", "180", "--flip", "2",
                "--roi", "1", "4", "6", "40", "30", "--json", str(stats))
    finally:
        headset.stop()
    packets = livelink.close()
    assert r.returncode == 0, r.stderr
    assert len(packets) == 3
    cams = json.loads(stats.read_text())["cameras"]
    assert [c["url"] for c in cams] == list(headset.urls)
    assert [c["rotate"] for c in cams] == [0, 90, 180] and [c["flip"] for c in cams] == [False, False, True]
    assert [c["roi"] for c in cams] == [None, [4, 6, 40, 30], None]


@pytest.mark.parametrize("args, words", [
    (["0", "1", "2", "--subject", "id001", "--rotate", "0", "45", "0"], "--rotate: camera 1 by 45 degrees"),
    (["0", "1", "2", "--subject", "id001", "--flip", "3"], "--flip 3: expected camera 0"),
    (["0", "1", "2", "--subject", "id001", "--roi", "0", "0", "0", "0", "10"], "--roi 0 0 0 0 10: expected"),
    (["headset", "--subject", "id001"], "SOURCE 'headset' needs --headset NAME"),
    (["headset", "--subject", "id001", "--headset", "nosuch"], "--headset 'nosuch': no such saved headset"),
    ([str(DEMO), "--rotate", "0", "0", "90"], "are for live cameras"),
])
def test_bad_camera_options_are_one_clear_line(tmp_path, args, words):
    r = mia(tmp_path, "stream", *args)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stream_stops_cleanly_on_ctrl_c(tmp_path, livelink, sig):
    # a shell's background job (`make test &`) ignores SIGINT and its children inherit that, so the
    # child gets Ctrl-C's default disposition back, as it has when run from a terminal
    proc = subprocess.Popen(mia_command("stream", str(DEMO), "--loop", "--livelink", f"127.0.0.1:{livelink.port}"),
                            cwd=ROOT, env=mia_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert wait_for(lambda: len(livelink.packets) >= 3 or proc.poll() is not None, timeout=TIMEOUT_S)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(WAIT_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "stopped by Ctrl-C; sockets closed" in err
    assert "frames in" in out and "Live Link Face" in out
    received = len(livelink.close())
    counted = int(out.split("Live Link Face ")[1].split()[0])
    # The signal may land between a packet's sendto and its count: then one more arrives than counted.
    # The wait above saw 3 packets arrive, so 3 is a bound on what was received; the count may be
    # one short of it (2, when the signal hit right after the third sendto: seen once under load).
    assert received >= 3 and counted <= received <= counted + 1


@pytest.mark.parametrize("option, value, words", [
    ("--osc", "127.0.0.1", "no port"),
    ("--osc", "127.0.0.1:70000", "not a UDP port"),
    ("--babble", "bad host!:8888", "neither an IP address nor a host name"),
    ("--livelink", "localhost:http", "is not a number"),
    ("--livelink", "::1:11111", "IPv6 addresses in brackets"),
    ("--livelink", "[::1:11111", "no port"),
])
def test_bad_host_port_is_one_clear_line(tmp_path, monkeypatch, capsys, option, value, words):
    r = mia_in_process(tmp_path, monkeypatch, capsys, "stream", str(DEMO), option, value, "--frames", "1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mia stream: error: {option}") and words in lines[0], r.stderr


@pytest.mark.parametrize("args, words", [
    (["stream", "no/such/capture", "--livelink", "127.0.0.1:11111"], "no such capture folder"),
    (["stream", "0", "1", "--livelink", "127.0.0.1:11111"], "three camera indices/URLs"),
    (["stream", "0", "1", "2", "--livelink", "127.0.0.1:11111"], "pass --subject"),
    (["stream", "0", "1", "file:///etc/passwd", "--subject", "id001"], "is refused"),
    (["stream", str(DEMO), "--model", "no/such/model.pt"], "no such model file"),
    (["stream", str(DEMO), "--subject", "nobody", "--frames", "1"], "unknown subject 'nobody'"),
    (["stream", "synthetic", "--subject", "nobody"], "synthetic subject 'nobody'"),
    (["blendshapes", "no/such/capture", "--out", "w.csv"], "no capture folder here"),
])
def test_bad_inputs_are_one_clear_line(tmp_path, monkeypatch, capsys, args, words):
    r = mia_in_process(tmp_path, monkeypatch, capsys, *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mia {args[0]}: error:") and words in lines[0], r.stderr
