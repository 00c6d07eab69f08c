"""The demo's accuracy and time under float32 and under bf16 autocast, over seeds (the speed issue's accuracy guard).

For each seed and each precision, runs `gold demo --seed S` in a child process with the demo's training config
(`configs/demo.yaml`) plus `precision: P`, in a temporary folder of its own (the committed `reports/demo` is never
touched), and reads back its `summary.json` and `unseen_metrics.json`: the F1 of GOLD, of its teacher and of the
baseline on the demo's test tiles, the GOLD student's F1 on the unseen scene, the two models' training seconds
and the whole demo's wall-clock seconds. Prints one line per run as it lands, then mean +- std (ddof 1) per
precision and the bf16 - fp32 difference of each score beside the larger of the two seed spreads: "within"
when |difference| <= that spread.

`--revs` instead times the whole demo (seed 0, the config as committed at that revision) at each git revision,
back to back, each from a temporary clone run with this interpreter: the before/after figure of the issue.
`.` stands for this checkout as it is, run in place (it rewrites reports/demo and data/demo, as `make demo` does).

Usage: python bench/demo_precision.py [--seeds 0 1 2] [--precisions fp32 bf16] [--json OUT]
       python bench/demo_precision.py --revs 157f298 HEAD   (or: --revs 157f298 .)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCORES = ("gold_f1", "teacher_f1", "baseline_f1", "unseen_f1")


def demo_config(precision: str,  # fp32 | bf16 | auto
                folder: Path,  # where to write the config
                ) -> Path:
    "The demo's training config with `precision` set, written into `folder`."
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg["precision"] = precision
    path = folder / f"demo_{precision}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_demo(out: Path,  # the demo's --out folder
              ) -> dict:
    "The guard's figures from one demo's summary.json and unseen_metrics.json."
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["model"]: r for r in summary["results"]}
    teacher = next(r for name, r in rows.items() if name.startswith("GOLD teacher"))
    unseen = json.loads((out / "unseen_metrics.json").read_text())
    return {"gold_f1": rows["GOLD"]["f1"], "teacher_f1": teacher["f1"], "baseline_f1": rows["baseline"]["f1"],
            "unseen_f1": round(100 * unseen["f1"], 2), "train_s_gold": summary["train_seconds"]["GOLD"],
            "train_s_baseline": summary["train_seconds"]["baseline"], "total_s": summary["total_seconds"]}


def run_demo(seed: int,  # demo seed
             precision: str,  # fp32 | bf16 | auto
             folder: Path,  # scratch folder of this run
             ) -> dict:
    "Run one demo in a child process; its figures plus the wall-clock seconds of the process."
    cfg = demo_config(precision, folder)
    cmd = [sys.executable, "-m", "gold.cli", "demo", "--seed", str(seed), "--config", str(cfg),
           "--out", str(folder / "report"), "--work", str(folder / "work")]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return {"seed": seed, "precision": precision, "wall_s": round(wall, 1), **read_demo(folder / "report")}


def mean_std(values: list[float]) -> tuple[float, float]:
    "Mean and sample standard deviation (0 for one value)."
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def guard_table(runs: list[dict],  # one dict per (seed, precision)
                precisions: list[str],  # the precisions compared, the first as reference
                ) -> str:
    "Markdown: mean +- std per precision and, for two precisions, the difference against the larger spread."
    cols = list(SCORES) + ["train_s_gold", "train_s_baseline", "wall_s"]
    lines = ["| precision | seeds | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    stats = {}
    for p in precisions:
        rs = [r for r in runs if r["precision"] == p]
        stats[p] = {c: mean_std([r[c] for r in rs]) for c in cols}
        lines.append(f"| {p} | {len(rs)} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in stats[p].values()) + " |")
    if len(precisions) == 2:
        a, b = precisions
        lines.append("")
        for c in SCORES:
            d = stats[b][c][0] - stats[a][c][0]
            spread = max(stats[a][c][1], stats[b][c][1])
            verdict = "within" if abs(d) <= spread else "outside"
            lines.append(f"- {c}: {b} - {a} = {d:+.2f} (larger seed spread {spread:.2f}: {verdict})")
        for c in ("train_s_gold", "train_s_baseline", "wall_s"):
            lines.append(f"- {c}: {a} / {b} = {stats[a][c][0] / stats[b][c][0]:.2f}x")
    return "\n".join(lines)


def time_demo(kit: Path,  # a checkout of the kit to run the demo in (its reports/demo and data/demo are written)
              label: str,  # what to call it in the printed line
              ) -> None:
    "Time `gold demo` (seed 0, the config as committed there) in `kit` with this interpreter; print one line."
    sha = subprocess.run(["git", "-C", str(kit), "rev-parse", "--short", "HEAD"], check=True,
                         capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "PYTHONPATH": str(kit)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gold.cli", "demo", "--out", str(kit / "reports" / "demo")],
                   check=True, cwd=kit, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    summary = json.loads((kit / "reports" / "demo" / "summary.json").read_text())
    print(f"rev {label} ({sha}): gold demo {wall:.1f} s wall (summary total_seconds "
          f"{summary['total_seconds']}, train GOLD {summary['train_seconds']['GOLD']} s, "
          f"baseline {summary['train_seconds']['baseline']} s)", flush=True)


def time_revisions(revs: list[str],  # git revisions, or "." for this checkout as it is (run in place)
                   ) -> None:
    "Time `gold demo` at each revision, back to back, each from its own temporary clone ('.' in place)."
    for rev in revs:
        if rev == ".":
            time_demo(ROOT, "working tree")
            continue
        with tempfile.TemporaryDirectory(prefix="gold-demo-rev-") as tmp:
            clone = Path(tmp) / "kit"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            subprocess.run(["git", "-C", str(clone), "checkout", "-q", rev], check=True)
            time_demo(clone, rev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--json", type=Path, help="also write every run's figures here")
    ap.add_argument("--revs", nargs="+", help="time the demo at these git revisions instead")
    args = ap.parse_args()
    if args.revs:
        time_revisions(args.revs)
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="gold-demo-precision-") as tmp:
        for seed in args.seeds:
            for p in args.precisions:
                folder = Path(tmp) / f"{p}-seed{seed}"
                folder.mkdir()
                runs.append(run_demo(seed, p, folder))
                print(json.dumps(runs[-1]), flush=True)
    print(guard_table(runs, args.precisions))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
