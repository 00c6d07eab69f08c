"""Throughput of the training loader (gold.data) on a synthetic preprocessed folder.

Generates a few synthetic scenes (gold.synth), cuts them into GeoTIFF tiles in the preprocessed layout in a
temporary folder (a minimal tiler of its own, so the benchmark does not depend on gold.preprocess), then times
`make_loader(TileDataset(..., crop=512, augment=True), batch_size=8)` with each worker count: samples/s over
`--batches` batches after one warm-up batch (worker start-up excluded, reported separately). Also prints the
per-sample cost of reading a tile and of the whole sample pipeline in the main process.

Usage: python bench/loader.py [--workers 0 2] [--scenes 3] [--size 1024] [--tile 512] [--stride 256]
                              [--crop 512] [--batch-size 8] [--batches 12] [--threads N] [--keep DIR]
(workers always run one torch thread each; --threads sets the main process's, which does the work when
--workers 0)
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def tile_scenes(out: Path, n_scenes: int, size: int, tile: int, stride: int, seed: int = 0) -> int:
    """Write synthetic scenes as train tiles of the preprocessed layout; return the number of tiles."""
    import pandas as pd
    from rasterio.crs import CRS
    from rasterio.transform import Affine, from_origin

    from gold.io import write_geotiff
    from gold.synth import SynthConfig, make_scene

    cfg = SynthConfig(size=size)
    crs = CRS.from_epsg(cfg.epsg)
    rows = []
    for k in range(n_scenes):
        scene, s = f"synth{k:02d}", make_scene(seed + k, cfg)
        x0 = cfg.origin[0] + k * (size * cfg.pixel_size + 1000.0)
        base = from_origin(x0, cfg.origin[1], cfg.pixel_size, cfg.pixel_size)
        for r in range(0, size - tile + 1, stride):
            for c in range(0, size - tile + 1, stride):
                name, win = f"{scene}_r{r:05d}_c{c:05d}", (slice(r, r + tile), slice(c, c + tile))
                tr = base * Affine.translation(c, r)
                d = out / "train"
                write_geotiff(d / "A" / f"{name}.tif", s.opt_t1[:, win[0], win[1]], crs, tr)
                write_geotiff(d / "B" / f"{name}.tif", s.sar_t2[:, win[0], win[1]], crs, tr, tags={"units": "linear"})
                write_geotiff(d / "C" / f"{name}.tif", s.opt_t2[:, win[0], win[1]], crs, tr)
                write_geotiff(d / "label" / f"{name}.tif", (s.label[win] > 0).astype(np.uint8), crs, tr, nodata=255)
                rows.append(dict(tile=name, scene=scene, split="train", row_off=r, col_off=c, height=tile,
                                 width=tile, crs=crs.to_wkt(), transform=" ".join(map(str, tuple(tr)[:6])),
                                 kept=True, reason="", has_opt_t2=True))
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    (out / "preprocess.json").write_text(json.dumps({"bench": "loader", "size": size, "tile": tile,
                                                     "stride": stride, "n_scenes": n_scenes, "seed": seed}))
    return len(rows)


def time_loader(ds, workers: int, batch_size: int, batches: int, seed: int = 0) -> tuple[float, float, int]:
    """Seconds to the first batch, samples/s over the next `batches` batches, and batches timed."""
    from gold.data import make_loader

    loader = make_loader(ds, batch_size=batch_size, workers=workers, seed=seed)
    t0 = time.perf_counter()
    it, epoch_iters = iter(loader), 1
    next(it)
    first = time.perf_counter() - t0
    n, t1 = 0, time.perf_counter()
    while n < batches:
        try:
            batch = next(it)
        except StopIteration:
            it, epoch_iters = iter(loader), epoch_iters + 1
            continue
        n += 1
    elapsed = time.perf_counter() - t1
    del it, loader
    return first, n * batch_size / elapsed, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--stride", type=int, default=256)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the main process (default torch's)")
    parser.add_argument("--keep", type=Path, default=None, help="write the tiles here (kept) instead of a temp folder")
    args = parser.parse_args()
    os.environ.setdefault("GOLD_PROGRESS", "0")

    import torch

    from gold.data import TileDataset

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "tiles"
        t = time.perf_counter()
        n_tiles = tile_scenes(root, args.scenes, args.size, args.tile, args.stride)
        print(f"{n_tiles} train tiles of {args.tile} px from {args.scenes} scenes of {args.size} px "
              f"in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        ds = TileDataset(root, "train", crop=args.crop, augment=True)
        print(f"normalisation statistics in {time.perf_counter() - t:.2f} s; torch threads {torch.get_num_threads()}, "
              f"cpus {os.cpu_count()}, cuda {torch.cuda.is_available()}")
        ds.reseed(0)
        k = min(len(ds), 8)
        t = time.perf_counter()
        for i in range(k):
            ds.read_raw(i)
        read = (time.perf_counter() - t) / k
        t = time.perf_counter()
        for i in range(k):
            ds[i]
        full = (time.perf_counter() - t) / k
        print(f"main process, per sample: read tile {read * 1e3:.1f} ms, read + augment + normalise {full * 1e3:.1f} ms")
        print(f"{'workers':>7} {'first batch s':>13} {'samples/s':>10} {'batches':>8}")
        for w in args.workers:
            first, rate, n = time_loader(ds, w, args.batch_size, args.batches)
            print(f"{w:>7} {first:>13.2f} {rate:>10.1f} {n:>8}")


if __name__ == "__main__":
    main()
