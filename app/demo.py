"""`make demo` before the GUI lands: render a short synthetic capture and say where it went."""
from __future__ import annotations

from pathlib import Path

from app.cli import main as cli_main


def main() -> int:
    out = Path("out/demo_dataset")
    rc = cli_main(["synth", str(out), "--identities", "2", "--captures", "1", "--frames", "60", "--size", "96"])
    print(f"synthetic HMC dataset in {out.resolve()} (open captures/*/cam*.mkv with any FFV1-capable player)")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
