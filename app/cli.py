"""`mia`: the command-line entry point. Each subcommand lives in app/commands/<name>.py and exposes
``add_parser(subparsers)`` and ``run(args) -> int``; user errors (MiaError) print one clear line."""
from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import MiaError

COMMANDS = ("synth", "avatars", "train", "adapt", "eval", "export", "bundle", "model", "bench", "info",
            "stream", "blendshapes", "arkit_head", "register")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mia", description="MIA Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"app.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"app.commands.{name}":
                raise
            continue
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except MiaError as err:
        print(f"mia {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mia {args.command}: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
