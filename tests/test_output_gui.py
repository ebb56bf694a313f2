"""The Output panel, its controller (profiles in QSettings, the output thread) and the main window's dock.

Run under Xvfb. Packets go to sockets bound on 127.0.0.1 by the test; every wait is bounded.
"""
from __future__ import annotations

import socket
import struct
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, QSettings, Signal

from engine.output.arkit import ARKIT_NAMES

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parent.parent
WAIT_MS = 60_000


def live_link_receiver() -> socket.socket:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    return rx


def received(rx: socket.socket, into: list[bytes]) -> bool:
    try:
        while True:
            into.append(rx.recv(4096))
    except BlockingIOError:
        return bool(into)


def jaw_open(packet: bytes) -> float:
    """jawOpen from a Live Link Face packet (layout: u8, 2 length-prefixed strings, ifii, u8, 61 f)."""
    pos = 1
    for _ in range(2):
        (n,) = struct.unpack_from(">i", packet, pos)
        pos += 4 + n
    pos += 16 + 1
    return struct.unpack_from(">61f", packet, pos)[ARKIT_NAMES.index("jawOpen")]


class FakeSession(QObject):
    frame_ready = Signal(object)
    subject_changed = Signal(dict)
    targets_changed = Signal(list)


class Bundle:
    def __init__(self, mesh, targets=None):
        self.mesh, self.targets, self.fresh = mesh, targets or {}, True


@pytest.fixture
def controller(qtbot, tmp_path):
    from app.output_controller import OutputController
    from widgets.output_panel import OutputPanel
    panel = OutputPanel(ARKIT_NAMES)
    qtbot.addWidget(panel)
    panel.show()
    session = FakeSession()
    ctl = OutputController(session, panel, QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat))
    yield ctl, panel, session
    ctl.shutdown()


def test_panel_settings_round_trip(qtbot):
    from widgets.output_panel import OutputPanel
    panel = OutputPanel(ARKIT_NAMES)
    qtbot.addWidget(panel)
    d = {"vrchat": {"enabled": True, "host": "10.0.0.5", "port": 9001}, "rate_hz": 30.0,
         "smoothing": {"enabled": False, "min_cutoff": 1.5, "beta": 0.2, "d_cutoff": 1.0}, "gain": [1.0] * 52}
    with qtbot.assertNotEmitted(panel.config_changed):
        panel.set_config(d)
    got = panel.config()
    assert got["vrchat"] == d["vrchat"] and got["rate_hz"] == 30.0 and got["gain"] == [1.0] * 52
    assert got["smoothing"]["enabled"] is False and got["smoothing"]["min_cutoff"] == 1.5
    assert got["livelink"]["port"] == 11111
    panel.show_weights(np.linspace(0, 1, 52), np.zeros(52))
    panel.show_stats({"active": ["vrchat"], "packets_per_s": 120.0, "packets": {"vrchat": 10},
                      "errors": {"vrchat": "VRChat OSC: cannot send to 10.0.0.5:9001 (Network is unreachable)"}})
    assert "Network is unreachable" in panel.error_label.text()
    assert panel.protocol_status["vrchat"].text() == "error"


def test_controller_streams_the_driven_face_and_keeps_profiles(qtbot, controller):
    from engine.facemodel import load_face_model
    ctl, panel, session = controller
    fm = load_face_model()
    neutral = fm.to_topology(fm.neutral)
    w = np.zeros(fm.expression_dim, np.float32)
    w[fm.expression_index("jawOpen")] = 0.8
    mesh = fm.to_topology(fm.expressed(fm.neutral, w))
    rx = live_link_receiver()
    try:
        panel.enabled["livelink"].setChecked(True)  # emits config_changed
        panel.ports["livelink"].setValue(rx.getsockname()[1])
        panel.smooth_check.setChecked(False)
        panel.rate_spin.setValue(0.0)
        panel._emit()
        session.subject_changed.emit({"neutral": neutral})
        packets: list[bytes] = []

        def pump() -> bool:
            session.frame_ready.emit(Bundle(mesh))
            return received(rx, packets)
        qtbot.waitUntil(pump, timeout=WAIT_MS)
        assert jaw_open(packets[-1]) == pytest.approx(0.8, abs=0.05)
        qtbot.waitUntil(lambda: "packets/s" in panel.stats_label.text(), timeout=WAIT_MS)
        ctl.save_profile("headset A")
        assert "headset A" in ctl.profiles.names()
        assert ctl.profiles.load("headset A").livelink.port == rx.getsockname()[1]
    finally:
        rx.close()


def test_bad_host_is_a_message_and_the_app_keeps_running(qtbot, controller):
    ctl, panel, session = controller
    panel.enabled["vrchat"].setChecked(True)
    panel.hosts["vrchat"].setText("not a host name")
    panel._emit()
    qtbot.waitUntil(lambda: "neither an IP address nor a host name" in panel.error_label.text(), timeout=WAIT_MS)
    session.frame_ready.emit(Bundle(np.zeros((10, 3), np.float32)))  # no neutral yet: ignored, no exception
    assert ctl.streamer._thread.is_alive()


def test_main_window_has_an_output_dock_that_streams(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MIA_STUDIO_HOME", str(tmp_path / "home"))
    from app.logs import setup_logging
    from app.main_window import MainWindow
    setup_logging()
    rx = live_link_receiver()
    win = MainWindow(threads=1)
    qtbot.addWidget(win)
    try:
        win.show()
        qtbot.waitExposed(win)
        assert "output" in win.docks
        panel = win.output_panel
        panel.enabled["livelink"].setChecked(True)
        panel.ports["livelink"].setValue(rx.getsockname()[1])
        panel._emit()
        win.start(capture=str(ROOT / "resources" / "demo_capture"), model=str(ROOT / "resources" / "default_model.pt"))
        win.session.play()
        packets: list[bytes] = []
        qtbot.waitUntil(lambda: received(rx, packets), timeout=60_000)
        assert packets[0][0] == 6
    finally:
        win.close()
        rx.close()
