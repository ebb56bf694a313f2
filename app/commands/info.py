"""`mia info`: what a checkpoint, ONNX export or capture holds (config, sizes, subjects, topology)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="describe a checkpoint, an ONNX export folder or a capture")
    p.add_argument("path", type=Path, help="checkpoint file, export folder or capture folder")
    return p


def _checkpoint_info(path: Path) -> None:
    from engine.io.checkpoint import load_checkpoint
    ckpt = load_checkpoint(path)
    model = ckpt.build_model()
    print(f"checkpoint {path} ({ckpt.kind})")
    print("config: " + ", ".join(f"{k}={v}" for k, v in ckpt.model_config.to_dict().items()))
    print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in model.parameter_count().items()))
    print(f"identities with adaptation layer ({len(ckpt.identities)}): {', '.join(ckpt.identities) or '-'}")
    print(f"subjects ({len(ckpt.subjects)}): {', '.join(ckpt.subjects) or '-'}")
    print(f"topology: {ckpt.topology['name']}, {ckpt.topology['vertex_count']} vertices, hash {ckpt.topology['hash']}")
    from engine.output.head import head_status
    print(f"ARKit weights: {head_status(ckpt).reason}")
    if ckpt.kind == "mia":
        from engine.runtime.averaging import averaging_for
        avg = averaging_for(ckpt.extra)
        spreads = f" (copies moved by shift {avg.shift}, zoom {avg.scale}, roll {avg.roll_deg} deg)" if avg.copies > 1 else ""
        print("test-time reading: " + (f"{avg.describe()}{spreads}; --averaging 1 --no-mirror reads once"
                                       if avg.enabled else "one read per frame"))
    if ckpt.provenance:
        print("provenance: " + json.dumps(ckpt.provenance, default=str)[:500])
    if ckpt.training:
        print(f"resumable training state at step {ckpt.training.get('step', '?')}")


def _capture_info(path: Path) -> None:
    from engine.io.capture_reader import open_capture
    with open_capture(path) as cap:
        m = cap.meta
        print(f"capture {path}: subject {m.subject_id}, headset {m.headset_id}, session {m.session_id}")
        print(f"{m.frame_count} frames at {m.fps:g} fps, {m.image_size[1]}x{m.image_size[0]} px, {m.storage}")
        if m.topology:
            print(f"topology: {m.topology.name}, {m.topology.vertex_count} vertices, hash {m.topology.hash}")
        arrays = [n for n in ("meshes", "codes", "expressions", "timestamps", "visibility", "head_pose")
                  if getattr(cap, n) is not None]
        print(f"ground truth: {', '.join(arrays) or 'none'}")
        for cam in m.cameras:
            print(f"  {cam.name}: f=({cam.fx:.1f}, {cam.fy:.1f}) c=({cam.cx:.1f}, {cam.cy:.1f}) "
                  f"dist={cam.dist.round(3).tolist()}")
        if m.provenance:
            print("provenance: " + ", ".join(f"{k}" for k in m.provenance))


def run(args) -> int:
    from engine.errors import MiaError
    path: Path = args.path
    if (path / "capture.json").exists():
        _capture_info(path)
    elif (path / "manifest.json").exists():
        manifest = json.loads((path / "manifest.json").read_text())
        print(json.dumps({k: manifest.get(k) for k in ("checkpoint", "topology", "image_size", "identities",
                                                        "max_abs_error", "exporter", "opset")}, indent=2))
    elif path.is_file():
        _checkpoint_info(path)
    else:
        raise MiaError(f"{path}: not a checkpoint file, an ONNX export folder or a capture folder")
    return 0
