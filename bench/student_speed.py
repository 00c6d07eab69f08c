"""Inference throughput of every student network the kit builds (GOLD and the baselines), side by side.

Builds each network without a teacher, in evaluation mode, and times it with `gold.infer.student_speed` on random
`--tile` px windows (one untimed warm-up pass, then passes until both `--repeats` and `--min-seconds` are
reached): Mpixel/s of the network alone, without reading, blending or writing. Prints parameters and GFLOPs at
512 px beside it. The `compare` experiment measures the same thing inside each run, with two passes; this script
gives steadier figures on a quiet machine. On a GPU the passes run under bf16 autocast.

Usage: python bench/student_speed.py [--variants lightweight full fc_ef fc_siam_diff bisrnet hetecd]
                                     [--tile 512] [--batch 1] [--repeats 3] [--min-seconds 3] [--device auto]
"""
import argparse
import os

os.environ.setdefault("GOLD_LOG_LEVEL", "WARNING")

import torch  # noqa: E402

from gold.infer import student_speed  # noqa: E402
from gold.models import build_model, count_parameters, model_flops  # noqa: E402

VARIANTS = ["lightweight", "full", "fc_ef", "fc_siam_diff", "bisrnet", "hetecd"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, help="networks to time")
    parser.add_argument("--tile", type=int, default=512, help="window side in pixels")
    parser.add_argument("--batch", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes at least")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time passes for at least this long")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"# student inference, {args.tile} px windows, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'variant':13s} {'params M':>9s} {'GFLOPs@512':>11s} {'device':>7s} {'passes':>7s} {'s/window':>9s} "
          f"{'Mpixel/s':>9s}")
    for variant in args.variants:
        net = build_model(variant, teacher=False)
        gflops = model_flops(net.student_config(), size=512) / 1e9
        r = student_speed(net, tile=args.tile, batch=args.batch, repeats=args.repeats,
                          min_seconds=args.min_seconds, device=args.device)
        print(f"{variant:13s} {count_parameters(net) / 1e6:9.2f} {gflops:11.1f} {r['device']:>7s} {r['passes']:7d} "
              f"{r['seconds_per_window']:9.3f} {r['mpixel_per_s']:9.3f}", flush=True)


if __name__ == "__main__":
    main()
