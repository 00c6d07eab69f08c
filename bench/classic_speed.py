"""The classic pixel classifier's two boosters side by side: scikit-learn's HistGradientBoosting and LightGBM.

On a preprocessed tile folder (`gold preprocess`, or `gold import --ombria`), both fit the same model (the same
sampled training pixels from `gold.classic.sample_pixels`, the same iterations, leaves and learning rate) and each
chooses its F1-best threshold on validation (the same `ThresholdSweep` as `PixelClassifier.fit`). Printed per
library and round: fit seconds (the booster alone, on the sampled pixels), predict Mpixel/s (the booster alone, on
every pixel of the test tiles, features computed once beforehand) and test F1 (every labelled test pixel once, at
that threshold). The CPU may be shared with other work: the libraries run interleaved, round by round, in one
process, and the last lines give the ratios per round (sklearn / lightgbm: above 1, LightGBM is faster).

Usage: OMP_NUM_THREADS=1 python bench/classic_speed.py --data TILES [--rounds 3] [--per-tile 2000] [--iters 200]
"""
import argparse
import os
import time

os.environ.setdefault("GOLD_LOG_LEVEL", "WARNING")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gold.classic import FEATURE_SIZES, booster_probability, fit_booster, pixel_features, sample_pixels  # noqa: E402
from gold.data import TileDataset  # noqa: E402
from gold.metrics import ConfusionMatrix, ThresholdSweep  # noqa: E402

BOOSTERS = ("sklearn", "lightgbm")


def split_features(ds: TileDataset) -> tuple[np.ndarray, np.ndarray]:
    "Features [N, F] and truth [N] (255 = unscored) of every pixel of a split's tiles."
    xs, ys = [], []
    for i in range(len(ds)):
        s = ds[i]
        f = pixel_features(s, FEATURE_SIZES)
        xs.append(f.reshape(len(f), -1).T)
        ys.append(np.asarray(s["mask"]).ravel())
    return np.concatenate(xs), np.concatenate(ys)


def f1_at(p: np.ndarray, y: np.ndarray, t: float) -> float:
    "Change-class F1 of p > t over the scored pixels."
    cm = ConfusionMatrix().update(torch.from_numpy((p > t).astype(np.int64))[None], torch.from_numpy(y)[None])
    return cm.scores()["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="preprocessed tile folder with train, val and test")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each fits and predicts both)")
    parser.add_argument("--per-tile", type=int, default=2000, help="training pixels drawn per tile at most")
    parser.add_argument("--iters", type=int, default=200, help="boosting iterations")
    parser.add_argument("--leaves", type=int, default=31, help="leaves per tree")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pixel draw and the boosters")
    args = parser.parse_args()
    train, val, test = (TileDataset(args.data, s) for s in ("train", "val", "test"))
    X, y = sample_pixels(train, args.per_tile, args.seed, FEATURE_SIZES)
    Xv, yv = split_features(val)
    Xt, yt = split_features(test)
    print(f"# {args.data}: {len(y)} training pixels x {X.shape[1]} features ({100 * y.mean():.1f} % change), "
          f"{len(yv)} val px, {len(yt)} test px ({(yt != 255).sum()} scored); {args.iters} iterations, "
          f"{args.leaves} leaves; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'round':>5s} {'booster':9s} {'fit s':>7s} {'predict Mpx/s':>14s} {'threshold':>9s} {'test F1':>8s}")
    rows = {b: [] for b in BOOSTERS}
    for r in range(args.rounds):
        for b in (BOOSTERS if r % 2 == 0 else BOOSTERS[::-1]):      # alternate who goes first
            t0 = time.perf_counter()
            model = fit_booster(X, y, b, args.iters, 0.1, args.leaves, args.seed)
            fit_s = time.perf_counter() - t0
            sweep = ThresholdSweep()
            sweep.update(torch.from_numpy(booster_probability(model, Xv))[None], torch.from_numpy(yv)[None])
            threshold = sweep.best()[0]
            t0 = time.perf_counter()
            p = booster_probability(model, Xt)
            pred_s = time.perf_counter() - t0
            f1 = f1_at(p, yt, threshold)
            rows[b].append((fit_s, len(yt) / pred_s / 1e6, f1))
            print(f"{r:5d} {b:9s} {fit_s:7.2f} {len(yt) / pred_s / 1e6:14.3f} {threshold:9.3f} {f1:8.4f}")
    for k, name in ((0, "fit time"), (1, "predict speed")):
        ratios = [(s[k] / l[k]) if k == 0 else (l[k] / s[k]) for s, l in zip(rows["sklearn"], rows["lightgbm"])]
        print(f"# {name}: lightgbm is {', '.join(f'{q:.2f}x' for q in ratios)} as fast as sklearn (per round; "
              f"median {np.median(ratios):.2f}x)")
    f1s = {b: np.mean([row[2] for row in rows[b]]) for b in BOOSTERS}
    print(f"# test F1: sklearn {f1s['sklearn']:.4f}, lightgbm {f1s['lightgbm']:.4f}")


if __name__ == "__main__":
    main()
