"""The paper's tables for the shipped model, on worlds no training saw (after `make model`).

Uses the recipe's folders (engine/recipe.py, default data/model): the final stage's checkpoint (run_finish/last.pt),
heldout/ (identities, headsets and sessions of seed TEST_SEED) and newcaps/ (new captures of trained
identities). Trains the person-specific (PS) baseline of one trained identity on that identity's own
training captures for the MIA-vs-PS comparison (cached in run_ps/). Prints Markdown tables:

- Table 1: untrained identities, shape only, against the neutral-mesh baseline;
- Table 2: trained identities under a new session (same headset) and under a new headset +
  appearance + environment; MIA vs PS for the PS subject;
- correspondence: drive held-out identity j from identity i's images vs from j's own images.

    .venv/bin/python benchmarks/model_tables.py [--root data/model] [--ps-steps 1500] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REGIONS = ("eyes", "mouth", "face")


def fmt(values: dict) -> str:
    return " | ".join(f"{values[r]:.2f}" for r in REGIONS)


def table1(engine, heldout: Path) -> tuple[list[str], dict]:
    from engine.evaluation.evaluate import evaluate_dataset
    results = evaluate_dataset(engine, heldout)
    by_subject: dict[str, list] = {}
    for r in results:
        by_subject.setdefault(r.subject, []).append(r)
    lines = ["| Subject | Eyes | Mouth | Face | Neutral eyes | Neutral mouth | Neutral face | Face ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rs in sorted(by_subject.items()):
        shape = {k: np.mean([r.mean("shape")[k] for r in rs]) for k in REGIONS}
        base = {k: np.mean([r.mean("baseline")[k] for r in rs]) for k in REGIONS}
        lines.append(f"| {name} | {fmt(shape)} | {fmt(base)} | {shape['face'] / base['face']:.2f} |")
    shape = {k: np.mean([r.mean("shape")[k] for r in results]) for k in REGIONS}
    base = {k: np.mean([r.mean("baseline")[k] for r in results]) for k in REGIONS}
    lines.append(f"| **all ({len(results)} captures)** | {fmt(shape)} | {fmt(base)} | "
                 f"{shape['face'] / base['face']:.2f} |")
    ratios = {k: shape[k] / base[k] for k in REGIONS}
    return lines, {"shape": shape, "baseline": base, "ratio": ratios}


def train_ps(root: Path, subject: str, steps: int) -> Path:
    from engine.mia.config import ModelConfig
    from engine.training.config import TrainConfig
    from engine.training.trainer import train
    out = root / "run_ps"
    cfg = TrainConfig(kind="ps", ps_subject=subject, subjects=[subject], steps=steps, batch_size=32,
                      augment={"probability": 0.35}, checkpoint_every=500, log_every=50,
                      model=ModelConfig(image_size=64), out_dir=str(out), texture_loss=False)
    resume = (out / "last.pt").is_file()
    return train(cfg, root / "train", out, resume=resume, show_bar=False)


def table2(engine, ps_engine, newcaps: Path, ps_subject: str) -> tuple[list[str], dict]:
    from engine.evaluation.evaluate import evaluate_capture
    from engine.recipe import NEW_HEADSET, NEW_SESSION
    lines = ["| Subject | Capture | Method | Eyes | Mouth | Face | Neutral face | Face ratio |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    faces: dict[str, dict[int, float]] = {"mia": {}, "ps": {}}
    growth = []
    for cap in sorted((newcaps / "captures").iterdir()):
        subject, index = cap.name.split("_c")
        methods = [("MIA", engine)] + ([("PS", ps_engine)] if subject == ps_subject else [])
        for label, eng in methods:
            r = evaluate_capture(eng, cap)
            shape, base = r.mean("shape"), r.mean("baseline")
            kind = {NEW_SESSION: "new session", NEW_HEADSET: "new headset+look+env"}[int(index)]
            lines.append(f"| {subject} | {kind} | {label} | {fmt(shape)} | {base['face']:.2f} | "
                         f"{shape['face'] / base['face']:.2f} |")
            if label == "MIA":
                faces["mia"].setdefault(subject, {})[int(index)] = shape["face"] / base["face"]
            else:
                faces["ps"][int(index)] = shape["face"]
            if label == "MIA" and subject == ps_subject:
                faces.setdefault("mia_ps_subject", {})[int(index)] = shape["face"]
    for subject, d in faces["mia"].items():
        growth.append(d[NEW_HEADSET] / d[NEW_SESSION])
    return lines, {"faces": faces, "growth": growth}


def correspondence(engine, heldout: Path, pairs: list[tuple[str, str]]) -> tuple[list[str], list[float]]:
    from engine.evaluation.evaluate import correspondence_error
    lines = ["| Source -> target | cross face | self face | cross/self | neutral face |",
             "|---|---:|---:|---:|---:|"]
    ratios = []
    for source, target in pairs:
        c = correspondence_error(engine, heldout / "captures" / f"{source}_c00", target).means()
        ratio = c["cross"]["face"] / c["self"]["face"]
        ratios.append(ratio)
        lines.append(f"| {source} -> {target} | {c['cross']['face']:.2f} | {c['self']['face']:.2f} | "
                     f"{ratio:.2f} | {c['neutral']['face']:.2f} |")
    return lines, ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=ROOT / "data" / "model")
    ap.add_argument("--checkpoint", type=Path, help="default: the recipe's final run (ROOT/run_finish/last.pt)")
    ap.add_argument("--ps-subject", default="id001")
    ap.add_argument("--ps-steps", type=int, default=1500)
    ap.add_argument("--out", type=Path, help="also write the tables and numbers here (.md and .json)")
    args = ap.parse_args()
    from engine.runtime.inference import InferenceEngine
    from engine.recipe import RecipeConfig
    engine = InferenceEngine(args.checkpoint or RecipeConfig(root=str(args.root)).final_run / "last.pt")
    out: list[str] = []
    t1, s1 = table1(engine, args.root / "heldout")
    out += ["## Table 1: untrained identities (held-out world)", "", *t1, "",
            "Ratios to the neutral baseline: " + ", ".join(f"{k} {v:.2f}" for k, v in s1["ratio"].items()), ""]
    ps = InferenceEngine(train_ps(args.root, args.ps_subject, args.ps_steps))
    t2, s2 = table2(engine, ps, args.root / "newcaps", args.ps_subject)
    out += ["## Table 2: trained identities, new captures", "", *t2, "",
            "MIA face-ratio growth, new headset+look+env over new session, per subject: "
            + ", ".join(f"{g:.2f}" for g in s2["growth"]), ""]
    t3, ratios = correspondence(engine, args.root / "heldout", [("id000", "id001"), ("id000", "id002"),
                                                                 ("id003", "id004"), ("id005", "id000")])
    out += ["## Correspondence: drive held-out identity j from identity i's images", "", *t3, "",
            f"Mean cross/self: {np.mean(ratios):.2f}", ""]
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"table1": s1, "table2": s2, "correspondence": ratios}, indent=1, default=float))


if __name__ == "__main__":
    main()
