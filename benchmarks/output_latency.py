"""Added latency of the output stage per frame: solve ARKit weights from a mesh, calibrate, smooth, send.

    .venv/bin/python benchmarks/output_latency.py [--frames 600]

Receivers are loopback sockets bound here (packets are sent for real, then discarded). Rows: the
solver alone; the stage alone (no protocol, then each protocol, then all three, with and without
OSC bundles); median and 95th percentile ms per frame. The mesh varies every frame (so the OSC
change filter sends most values): a worst case for the number of datagrams.
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.facemodel import load_face_model  # noqa: E402
from engine.output.endpoint import Endpoint  # noqa: E402
from engine.output.solver import BlendshapeSolver  # noqa: E402
from engine.output.stage import OutputConfig, OutputStage  # noqa: E402


def timed(fn, n: int) -> tuple[float, float]:
    out = []
    for k in range(n):
        t0 = time.perf_counter()
        fn(k)
        out.append((time.perf_counter() - t0) * 1e3)
    a = np.array(out[n // 10:])
    return float(np.median(a)), float(np.percentile(a, 95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600)
    n = ap.parse_args(argv).frames
    fm = load_face_model()
    solver = BlendshapeSolver(fm)
    rng = np.random.default_rng(0)
    neutral = fm.to_topology(fm.neutral)
    weights = np.clip(rng.normal(0.15, 0.2, (64, fm.expression_dim)), 0, 1).astype(np.float32)
    meshes = np.stack([fm.to_topology(fm.expressed(fm.neutral, w)) for w in weights])
    arkit = solver.arkit(meshes, neutral)
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for s in sinks:
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    ports = [s.getsockname()[1] for s in sinks]
    rows = [("solver (weights + gaze from a mesh)",
             timed(lambda k: (solver.arkit(meshes[k % 64], neutral), solver.gaze(meshes[k % 64], neutral)), n))]
    configs = {
        "stage, no protocol": OutputConfig(rate_hz=0),
        "stage, VRChat OSC": OutputConfig(rate_hz=0, vrchat=Endpoint(True, "127.0.0.1", ports[0])),
        "stage, Babble OSC": OutputConfig(rate_hz=0, babble=Endpoint(True, "127.0.0.1", ports[1])),
        "stage, Live Link": OutputConfig(rate_hz=0, livelink=Endpoint(True, "127.0.0.1", ports[2])),
    }
    every = dict(vrchat=Endpoint(True, "127.0.0.1", ports[0]), babble=Endpoint(True, "127.0.0.1", ports[1]),
                 livelink=Endpoint(True, "127.0.0.1", ports[2]))
    configs["stage, all three"] = OutputConfig(rate_hz=0, **every)
    configs["stage, all three, OSC bundles"] = OutputConfig(rate_hz=0, osc_bundle=True, **every)
    for name, cfg in configs.items():
        stage = OutputStage(cfg)
        rows.append((name, timed(lambda k: stage.process(arkit[k % 64], None, k / 60), n)))
        stage.close()
        for s in sinks:  # drain
            s.setblocking(False)
            try:
                while True:
                    s.recv(4096)
            except BlockingIOError:
                pass
    from engine.output.streamer import OutputStreamer
    streamer = OutputStreamer(configs["stage, all three"], solver)
    rows.append(("frame loop's cost: OutputStreamer.submit (all three on)",
                 timed(lambda k: streamer.submit(meshes[k % 64], neutral), n)))
    streamer.close()
    print("| step | median ms | p95 ms |\n|---|---|---|")
    for name, (med, p95) in rows:
        print(f"| {name} | {med:.3f} | {p95:.3f} |")
    for s in sinks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
