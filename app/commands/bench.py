"""`mia bench`: run the benchmarks in benchmarks/ by name (each is a standalone script).

    mia bench                      # list them with their one-line purpose
    mia bench studio_fps           # run one (names are file stems; a unique prefix is enough)
    mia bench --all
    mia bench inference_speed -- --frames 50   # arguments after -- go to the benchmark
"""
from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

from engine.errors import MiaError

BENCH_DIR = Path(__file__).resolve().parent.parent.parent / "benchmarks"


def available() -> dict[str, Path]:
    """name -> script, for every benchmarks/*.py."""
    return {p.stem: p for p in sorted(BENCH_DIR.glob("*.py")) if not p.name.startswith("_")}


def purpose(script: Path) -> str:
    """The first line of a benchmark's module docstring."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def resolve(name: str, scripts: dict[str, Path]) -> Path:
    if name in scripts:
        return scripts[name]
    matches = [n for n in scripts if n.startswith(name)]
    if len(matches) == 1:
        return scripts[matches[0]]
    raise MiaError(f"no single benchmark called {name!r}" + (f" (matches {matches})" if matches else "")
                   + f"; available: {', '.join(scripts)}")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="run benchmarks/ scripts by name (no name: list them)")
    p.add_argument("names", nargs="*", help="benchmark names (file stems in benchmarks/)")
    p.add_argument("--all", action="store_true", help="run every benchmark")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: arguments passed to the benchmark(s)")
    return p


def run(args) -> int:
    scripts = available()
    if not scripts:
        raise MiaError(f"{BENCH_DIR}: no benchmark scripts found")
    names = list(scripts) if args.all else list(args.names)
    extra = [a for a in (args.extra or []) if a != "--"]
    if not names:
        print("benchmarks (run with `mia bench NAME`):")
        for name, script in scripts.items():
            print(f"  {name:18s} {purpose(script)}")
        return 0
    failed = []
    for name in names:
        script = resolve(name, scripts)
        print(f"== {script.stem}", flush=True)
        rc = subprocess.call([sys.executable, str(script), *extra])
        if rc != 0:
            failed.append(f"{script.stem} (exit {rc})")
    if failed:
        raise MiaError(f"benchmarks failed: {', '.join(failed)}")
    return 0
