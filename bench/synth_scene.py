"""Time the synthetic scene generator: seconds per scene for several sizes on one core.

Usage: OMP_NUM_THREADS=1 python bench/synth_scene.py [--sizes 512 1024 2048] [--repeat 3]
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from gold.synth import SynthConfig, make_scene  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'size':>6} {'best s':>8} {'Mpixel/s':>9} {'changed':>8}")
    for size in args.sizes:
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            scene = make_scene(0, SynthConfig(size=size))
            times.append(time.perf_counter() - t)
        best = min(times)
        print(f"{size:>6} {best:>8.2f} {size * size / best / 1e6:>9.2f} {(scene.label > 0).mean():>8.1%}")


if __name__ == "__main__":
    main()
