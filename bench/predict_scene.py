"""Whole-scene prediction speed and memory: `gold.infer.predict_scene` on synthetic scenes of growing size.

Writes a 2048 x 2048 synthetic scene (gold.synth) and, for larger sizes, a scene made by tiling it (the A and B
GeoTIFFs of an 8192 x 8192 scene are written window by window, never held in memory), an untrained student
checkpoint (weights do not change the cost), then predicts each scene in its own subprocess and reads that
child's peak resident memory from `os.wait4`. Prints Mpixel/s and peak RSS per size, and whether the largest
scene's peak stays within `--max-ratio` of the smallest one's (memory bounded by the window rows, not the scene).

The untrained student puts p(change) above 0.5 almost everywhere (one polygon per scene); the default
`--threshold 0.968` (its median p on the base scene) makes about half of the scene "change" in some thousand
parts on the 8192 scene, a realistic load for the polygon stage. `--threads N` sets OMP_NUM_THREADS for the
predictions: on a busy machine one thread per process can be much faster than two that wait for each other.
`--precisions` runs every size under each precision of the kit's policy (`gold predict --precision`: fp32, bf16 =
bf16 autocast + channels_last, auto = what this machine chooses) and prints the speed ratio of each to the first.

Usage: python bench/predict_scene.py [--sizes 2048 8192] [--variant lightweight] [--tile 512] [--overlap 128]
                                     [--batch 4] [--device cpu] [--threads N] [--work DIR] [--max-ratio 1.3]
                                     [--precisions fp32 bf16]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GOLD_PROGRESS", "0")
os.environ.setdefault("GOLD_LOG_LEVEL", "WARNING")

BASE = 2048  # side of the generated scene; larger scenes tile it


def make_inputs(work: Path, sizes: list[int], variant: str) -> tuple[Path, dict]:
    "The base scene, the tiled larger scenes and a checkpoint; returns (checkpoint, size -> (A, B))."
    import numpy as np
    import rasterio
    import torch
    from rasterio.windows import Window

    from gold.data import NormStats, sar_to_space
    from gold.io import read_raster
    from gold.models import build_model
    from gold.synth import SynthConfig, write_scene
    from gold.train import save_checkpoint, student_checkpoint

    base = work / f"scene{BASE}"
    if not (base / "s_B.tif").exists():
        write_scene(base, "s", seed=0, cfg=SynthConfig(size=BASE))
    scenes = {}
    for size in sizes:
        if size == BASE:
            scenes[size] = (base / "s_A.tif", base / "s_B.tif")
            continue
        if size % BASE:
            raise SystemExit(f"--sizes must be multiples of {BASE}")
        folder = work / f"scene{size}"
        folder.mkdir(exist_ok=True)
        pair = []
        for role in ("A", "B"):
            dst_path = folder / f"s_{role}.tif"
            pair.append(dst_path)
            if dst_path.exists():
                continue
            with rasterio.open(base / f"s_{role}.tif") as src:
                profile = {**src.profile, "width": size, "height": size, "tiled": True, "blockxsize": 256,
                           "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
                tags = src.tags()
                tmp = folder / f".s_{role}.tmp.tif"
                with rasterio.open(tmp, "w", **profile) as dst:
                    dst.update_tags(**tags)
                    for r in range(0, BASE, 512):            # read the base scene a strip at a time
                        strip = src.read(window=Window(0, r, BASE, 512))
                        for i in range(size // BASE):
                            for j in range(size // BASE):
                                dst.write(strip, window=Window(j * BASE, i * BASE + r, BASE, 512))
                os.replace(tmp, dst_path)
        scenes[size] = tuple(pair)
    ckpt = work / f"student_{variant}.pt"
    if not ckpt.exists():
        a = read_raster(base / "s_A.tif")[0].astype(np.float64)
        b = sar_to_space(read_raster(base / "s_B.tif")[0], "linear")
        stats = NormStats(a.mean((1, 2)).tolist(), a.std((1, 2)).tolist(), b.mean((1, 2)).tolist(),
                          b.std((1, 2)).tolist(), sar_units=["linear"])
        torch.manual_seed(0)
        model = build_model(variant, 3, 1, teacher=False)
        save_checkpoint(student_checkpoint(model, stats, {"threshold": 0.5}), ckpt)
    return ckpt, scenes


def child(args) -> None:
    "Predict one scene and print its summary (runs in a subprocess)."
    from gold.infer import predict_scene
    summary = predict_scene(args.model, args.a, args.b, args.out, tile=args.tile, overlap=args.overlap,
                            batch=args.batch, device=args.device, threshold=args.threshold, overwrite=True,
                            precision=args.precision)
    print(json.dumps(summary))


def run_child(args, ckpt: Path, a: Path, b: Path, out: Path, precision: str) -> tuple[dict, float]:
    "Run one prediction in a subprocess; return its summary and its peak RSS in MiB."
    cmd = [sys.executable, __file__, "--child", "--model", str(ckpt), "--a", str(a), "--b", str(b), "--out",
           str(out), "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch", str(args.batch),
           "--device", args.device, "--precision", precision] + (["--threshold", str(args.threshold)] if args.threshold else [])
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        stdout = proc.stdout.read()          # until the child exits; it is reaped by wait4 below, not by Popen
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"prediction failed:\n{err.read()[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[2048, 8192])
    parser.add_argument("--variant", default="lightweight", choices=("lightweight", "full"))
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threshold", type=float, default=0.968, help="decision threshold (see above)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the predictions")
    parser.add_argument("--work", type=Path, default=None, help="folder for scenes and outputs (kept; reused)")
    parser.add_argument("--max-ratio", type=float, default=1.3, help="allowed peak RSS ratio largest/smallest")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=("auto", "fp32", "bf16"),
                        help="precisions to run every size in (ratios are to the first)")
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--model", "--a", "--b", "--out"):
        parser.add_argument(name, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import torch
    work = args.work or Path(tempfile.mkdtemp(prefix="gold-bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ckpt, scenes = make_inputs(work, sorted(args.sizes), args.variant)
    print(f"# inputs ready in {time.perf_counter() - t:.0f} s under {work}")
    print(f"# gold predict: {args.variant} student (untrained), tile {args.tile}, overlap {args.overlap}, "
          f"batch {args.batch}, threshold {args.threshold}, device {args.device}, "
          f"threads {args.threads or torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'size':>6} {'Mpx':>6} {'precision':>9} {'windows':>7} {'seconds':>8} {'Mpixel/s':>9} "
          f"{'peak RSS MiB':>13} {'polygons':>9} {'load before':>12}")
    peaks, speed = {}, {}
    for size in sorted(args.sizes):
        for precision in args.precisions:
            load = os.getloadavg()[0]
            summary, peak = run_child(args, ckpt, *scenes[size], work / f"out{size}_{precision}", precision)
            peaks[size, precision], speed[size, precision] = peak, summary["mpixel_per_s"]
            print(f"{size:>6} {size * size / 1e6:>6.1f} {summary['precision']:>9} {summary['windows']['count']:>7} "
                  f"{summary['seconds']:>8.1f} {summary['mpixel_per_s']:>9.3f} {peak:>13.0f} "
                  f"{summary['polygons']['count']:>9} {load:>12.2f}", flush=True)
    first = args.precisions[0]
    for size in sorted(args.sizes):
        for precision in args.precisions[1:]:
            print(f"# {size}^2: {precision}/{first} speed x{speed[size, precision] / speed[size, first]:.2f}, "
                  f"peak RSS x{peaks[size, precision] / peaks[size, first]:.2f}")
    lo, hi = min(args.sizes), max(args.sizes)
    ratio = max(peaks[hi, p] / peaks[lo, p] for p in args.precisions)
    verdict = "OK" if ratio <= args.max_ratio else "FAIL"
    print(f"# peak RSS {hi}^2 / {lo}^2 = {ratio:.2f} at most (limit {args.max_ratio}): {verdict}; "
          f"load average now {os.getloadavg()[0]:.2f}")
    if verdict == "FAIL":
        sys.exit(1)


if __name__ == "__main__":
    main()
