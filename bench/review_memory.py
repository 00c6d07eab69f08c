"""Memory of the JupyterLab kernel with an 8192 x 8192 px scene open in the notebook review.

Writes a synthetic scene of that size (optical t1 uint8 x 3, SAR t2 float32, and a `gold predict` folder:
probability, mask, errors, polygons), starts JupyterLab on 127.0.0.1, runs nbs/tutorials/review.ipynb on it in
headless chromium (the review map and the annotator), waits for the tiles, zooms in to native resolution, and
prints the kernel's resident memory (VmRSS now, VmHWM peak) against the size of the images held in memory.

    .venv/bin/python bench/review_memory.py [--size 8192] [--work /tmp/gold-review-bench]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))   # the browser helpers live with the tests

BLOCK = 1024


def write_big(path: Path, count: int, dtype: str, size: int, fill, nodata=None, tags=None) -> None:
    """A tiled, compressed GeoTIFF written block row by block row (never the whole image in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=size, height=size, count=count, dtype=dtype, crs="EPSG:32633",
                   transform=Affine(2.0, 0, 500000, 0, -2.0, 4650000), tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", nodata=nodata)
    with rasterio.open(path, "w", **profile) as ds:
        for r in range(0, size, BLOCK):
            rows, cols = np.mgrid[r:r + BLOCK, 0:size]
            ds.write(fill(rows, cols).astype(dtype).reshape(count, BLOCK, size),
                     window=rasterio.windows.Window(0, r, size, BLOCK))
        if tags:
            ds.update_tags(**tags)


def changed(rows, cols):
    """Change in squares of 512 px on a 2048 px lattice."""
    return ((rows % 2048) < 512) & ((cols % 2048) < 512)


def write_scene(root: Path, size: int) -> tuple[Path, Path]:
    base, pred = root / "big", root / "pred"
    write_big(root / "big_A.tif", 3, "uint8", size, lambda r, c: np.stack([(r // 4) % 256, (c // 4) % 256,
                                                                           ((r + c) // 8) % 256]))
    write_big(root / "big_B.tif", 1, "float32", size, lambda r, c: 0.02 + 0.2 * changed(r, c) + 0.01 * ((r ^ c) % 7),
              tags={"units": "linear"})
    write_big(pred / "probability.tif", 1, "uint8", size, lambda r, c: np.where(changed(r, c), 240, 10), nodata=255)
    write_big(pred / "change_mask.tif", 1, "uint8", size, lambda r, c: changed(r, c), nodata=255)
    write_big(pred / "errors.tif", 1, "uint8", size, lambda r, c: np.where(changed(r, c), 1, 0))
    feats = []
    for r0 in range(0, size, 2048):
        for c0 in range(0, size, 2048):
            x0, y0 = 500000 + 2 * c0, 4650000 - 2 * r0
            ring = [[x0, y0], [x0 + 1024, y0], [x0 + 1024, y0 - 1024], [x0, y0 - 1024], [x0, y0]]
            feats.append({"type": "Feature", "properties": {"area": 1024.0 ** 2, "mean_probability": 0.94},
                          "geometry": {"type": "Polygon", "coordinates": [ring]}})
    (pred / "change_polygons.geojson").write_text(json.dumps(
        {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
         "features": feats}))
    return base, pred


def kernel_memory(runtime: Path) -> dict:
    """VmRSS and VmHWM (MiB) of the ipykernel processes whose connection file is in a Jupyter runtime folder."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if "ipykernel" in cmd and str(runtime) in cmd:
            out[int(proc.name)] = {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gold-review-bench"))
    ap.add_argument("--zoom-in", type=int, default=5, help="clicks on + after the first view (to native resolution)")
    ap.add_argument("--gdal-cachemax", default=None, help="GDAL_CACHEMAX of the kernel (MB); unset = GDAL's default")
    args = ap.parse_args()
    from lab import browser_page, copy_notebook, jupyterlab, map_screenshot, run_all_cells
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    t = time.perf_counter()
    base, pred = write_scene(args.work / "data", args.size)
    print(f"scene {args.size} x {args.size} px written in {time.perf_counter() - t:.0f} s")
    in_memory = args.size ** 2 * (3 + 4 + 1 + 1 + 1) / 2 ** 20
    copy_notebook(ROOT / "nbs" / "tutorials" / "review.ipynb", args.work / "review.ipynb")
    env = {"GOLD_REVIEW_SCENE": str(base), "GOLD_REVIEW_PRED": str(pred), "GOLD_REVIEW_OUT": str(args.work)}
    if args.gdal_cachemax:
        env["GDAL_CACHEMAX"] = str(args.gdal_cachemax)
    runtime = args.work / ".lab-home" / "runtime"
    (args.work / "baseline.ipynb").write_text(json.dumps({   # the same imports, no scene: the kernel's floor
        "cells": [{"cell_type": "code", "id": "imports", "metadata": {}, "outputs": [], "execution_count": None,
                   "source": "import gold.maps, gold.metrics, leafmap.leafmap, localtileserver"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)"}},
        "nbformat": 4, "nbformat_minor": 5}))
    with jupyterlab(args.work, env) as (url, token):   # a server of its own, so the kernels are not confused
        with browser_page(args.work / "profile0") as (page, _):
            run_all_cells(page, f"{url}/lab/tree/baseline.ipynb?token={token}")
            floor = kernel_memory(runtime)
    print(f"kernel with the imports only: {floor}")
    shutil.rmtree(args.work / ".lab-home" / "workspaces", ignore_errors=True)   # the next session opens one tab
    with jupyterlab(args.work, env) as (url, token):
        with browser_page(args.work / "profile") as (page, requested):
            t = time.perf_counter()
            run_all_cells(page, f"{url}/lab/tree/review.ipynb?token={token}", timeout_ms=600_000,
                          debug_png=args.work / "failed.png")
            print(f"notebook ran in {time.perf_counter() - t:.0f} s; kernel after it: {kernel_memory(runtime)}")
            review = page.locator(".leaflet-container").nth(0)
            map_screenshot(page, review, args.work / "first_view.png")
            print(f"first view drawn after {time.perf_counter() - t:.0f} s")
            for _ in range(args.zoom_in):
                review.locator(".leaflet-control-zoom-in").click()
                map_screenshot(page, review, args.work / "zoomed.png", settle_ms=500)
            print(f"zoomed in {args.zoom_in} times after {time.perf_counter() - t:.0f} s; "
                  f"{sum('/api/tiles/' in u for u in requested)} tiles requested")
            mem = kernel_memory(runtime)
    assert len(floor) == 1 and len(mem) == 1, (floor, mem)
    base_rss = next(iter(floor.values()))["VmRSS"]
    for pid, m in mem.items():
        print(f"kernel {pid}: {m['VmRSS'] - base_rss:.0f} MiB above the imports-only kernel ({base_rss:.0f} MiB)")
        print(f"kernel {pid}: VmRSS {m['VmRSS']:.0f} MiB, peak VmHWM {m['VmHWM']:.0f} MiB "
              f"(the scene's images would take {in_memory:.0f} MiB in memory)")


if __name__ == "__main__":
    main()
