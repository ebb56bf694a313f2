"""`mia eval`: region errors of a checkpoint on a capture or a dataset, as the paper's tables."""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from app.commands.reading import add_reading_options


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate a checkpoint on captures (eyes/mouth/face errors, report)")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path, help="a capture folder or a dataset folder holding captures")
    p.add_argument("--subjects", nargs="+", help="only captures of these subject ids")
    p.add_argument("--out", type=Path, required=True, help="report folder (results.json, report.md, plots/)")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stride", type=int, default=1, help="evaluate every k-th frame")
    p.add_argument("--batch", type=int, default=64, help="frames per forward pass")
    add_reading_options(p)
    p.add_argument("--correspondence", nargs=2, metavar=("SOURCE_CAPTURE", "TARGET_ID"),
                   help="also drive synthetic identity TARGET_ID (e.g. id003) from SOURCE_CAPTURE (Sec. 4.3)")
    return p


def run(args) -> int:
    import json

    from engine.evaluation.evaluate import (correspondence_error, evaluate_dataset, markdown_table,
                                            write_report)
    from engine.runtime.inference import InferenceEngine
    engine = InferenceEngine(args.checkpoint, backend=args.backend, threads=args.threads, averaging=args.averaging,
                             mirror=args.mirror)
    bar = tqdm(total=1, unit="frame", desc="eval")

    def progress(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()

    results = evaluate_dataset(engine, args.data, args.subjects, progress=progress, stride=args.stride,
                               batch_size=args.batch)
    bar.close()
    files = write_report(results, args.out, title=f"MIA evaluation of {args.checkpoint.name} on {args.data.name}",
                         info=engine.info())
    print(markdown_table(results))
    if args.correspondence:
        source, target = args.correspondence
        corr = correspondence_error(engine, source, target, stride=args.stride, batch_size=args.batch)
        (args.out / "correspondence.json").write_text(json.dumps(corr.to_dict(), indent=1))
        print()
        print(corr.markdown())
    print(f"\nreport written to {files['markdown'].parent.resolve()}")
    return 0
