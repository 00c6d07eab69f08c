"""Training throughput of the whole GOLD training step: data loading, augmentation, forward, loss, backward,
clipping and the AdamW step, through `gold.train.train_one_epoch`.

Synthesises one scene, tiles it, then times `--batches` training batches (after one untimed batch) for each
variant and prints samples/s. On a GPU the step runs with bf16 autocast and channels_last.

Usage: python bench/train_throughput.py [--variants full lightweight] [--batch 8] [--crop 256]
                                        [--batches 4] [--device auto] [--workers 0] [--ablation gold]
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GOLD_PROGRESS", "0")
os.environ.setdefault("GOLD_LOG_LEVEL", "WARNING")

import torch  # noqa: E402

from gold.data import make_loader  # noqa: E402
from gold.train import DataConfig, ModelConfig, TrainConfig, Trainer, train_one_epoch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["full", "lightweight"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--ablation", default="gold")
    parser.add_argument("--size", type=int, default=1024, help="synthetic scene size")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gold-bench-"))
    print(f"# training step (loader + augment + forward + loss + backward + AdamW), ablation={args.ablation}, "
          f"batch {args.batch}, crop {args.crop}, {args.batches} timed batches, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'variant':<12} {'device':<8} {'s/batch':>8} {'samples/s':>10}")
    for variant in args.variants:
        cfg = TrainConfig(name=f"bench-{variant}", ablation=args.ablation, device=args.device,
                          data=DataConfig(root=str(tmp / "tiles"), crop=args.crop, batch_size=args.batch,
                                          workers=args.workers,
                                          synth={"size": args.size, "seed": 0, "tile": args.crop}),
                          model=ModelConfig(variant=variant))
        tr = Trainer(cfg, tmp / f"run-{variant}")
        loader = make_loader(tr.sets["train"], batch_size=args.batch, shuffle=True, workers=args.workers, seed=0)
        train_one_epoch(tr.model, tr.loss_fn, loader, tr.optimizer, tr.precision, 0, max_batches=1)  # warm-up
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        logs = train_one_epoch(tr.model, tr.loss_fn, loader, tr.optimizer, tr.precision, 1,
                               max_batches=args.batches)
        if tr.device.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t) / max(logs["batches"], 1)
        print(f"{variant:<12} {tr.device.type:<8} {dt:>8.2f} {args.batch / dt:>10.2f}")


if __name__ == "__main__":
    main()
