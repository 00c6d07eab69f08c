"""`gold import` and `gold preprocess` as a user runs them: files, the no-leak split, re-runs, errors."""
import csv

import numpy as np
import rasterio
from rasterio.transform import Affine

SPLITS = ("train", "val", "test")


def read_manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def kept_rows(out):
    return [r for r in read_manifest(out) if r["kept"] == "True"]


def split_cover(out, raw_a, scene):
    """[3, H, W]: per split, how many tiles cover each pixel of the scene, from the tile GeoTIFFs' transforms."""
    with rasterio.open(raw_a) as ref:
        inv, shape, crs = ~ref.transform, (ref.height, ref.width), ref.crs
    cover = np.zeros((3, *shape), np.int32)
    for row in kept_rows(out):
        if row["scene"] != scene:
            continue
        with rasterio.open(out / row["split"] / "label" / f"{row['tile']}.tif") as ds:
            assert ds.crs == crs
            col, r = (round(v) for v in inv @ (ds.transform.c, ds.transform.f))
            cover[SPLITS.index(row["split"]), max(r, 0):r + ds.height, max(col, 0):col + ds.width] += 1
    return cover


def assert_leak_free(out, raw, scenes):
    for scene in scenes:
        cover = split_cover(out, raw / f"{scene}_A.tif", scene)
        in_two = ((cover > 0).sum(0) > 1).sum()
        assert in_two == 0, f"{scene}: {in_two} pixels are in two splits"


def mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_synth_then_preprocess_is_leak_free_and_reruns_as_a_no_op(run_gold, tmp_path):
    run_gold("synth", "--out", tmp_path / "raw", "--size", 768, "--n-scenes", 2, "--seed", 0)
    proc = run_gold("preprocess", "--raw", tmp_path / "raw", "--out", tmp_path / "out", "--tile", 128)
    out = tmp_path / "out"
    assert (out / "preprocess.json").is_file() and (out / "manifest.csv").is_file()
    rows = kept_rows(out)
    by_split = {s: {r["tile"] for r in rows if r["split"] == s} for s in SPLITS}
    assert all(by_split.values()), {s: len(v) for s, v in by_split.items()}       # no split empty
    assert not by_split["val"] & by_split["test"]                                 # test is not a copy of val
    for split, tiles in by_split.items():
        for role in ("A", "B", "C", "label"):
            assert {p.stem for p in (out / split / role).glob("*.tif")} == tiles, (split, role)
    assert_leak_free(out, tmp_path / "raw", ["synth00", "synth01"])
    row = rows[0]
    with rasterio.open(out / row["split"] / "B" / f"{row['tile']}.tif") as b, \
            rasterio.open(out / row["split"] / "label" / f"{row['tile']}.tif") as e:
        assert b.dtypes[0] == "float32" and b.tags()["units"] == "linear" and b.crs.to_epsg() == 32633
        assert e.nodata == 255 and set(np.unique(e.read(1))) <= {0, 1, 255}
        assert tuple(b.transform)[:6] == tuple(float(v) for v in row["transform"].split())
    # the same command again: nothing is rewritten
    before = mtimes(out)
    again = run_gold("preprocess", "--raw", tmp_path / "raw", "--out", out, "--tile", 128)
    assert "up to date" in again.stderr
    assert mtimes(out) == before
    assert "train" in proc.stderr


def test_preprocess_errors_are_one_line(run_gold, tmp_path):
    raw = tmp_path / "raw"
    run_gold("synth", "--out", raw, "--size", 256)
    with rasterio.open(raw / "synth_E.tif", "r+") as ds:      # a label value outside {0, 255}
        data = ds.read(1)
        data[0, 0] = 7
        ds.write(data, 1)
    proc = run_gold("preprocess", "--raw", raw, "--out", tmp_path / "out", "--tile", 64, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("gold preprocess: error:") and "synth_E.tif" in lines[0] and "[7]" in lines[0]
    assert not (tmp_path / "out").exists()

    run_gold("synth", "--out", raw, "--size", 256, "--overwrite")
    run_gold("preprocess", "--raw", raw, "--out", tmp_path / "out", "--tile", 64)
    before = mtimes(tmp_path / "out")
    proc = run_gold("preprocess", "--raw", raw, "--out", tmp_path / "out", "--tile", 32, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--overwrite" in lines[0], proc.stderr
    assert mtimes(tmp_path / "out") == before
    run_gold("preprocess", "--raw", raw, "--out", tmp_path / "out", "--tile", 32, "--overwrite")
    assert all(r["height"] == "32" for r in read_manifest(tmp_path / "out"))


def test_real_scenes_import_and_tile(run_gold, tmp_path, real_data):
    raw, out = tmp_path / "raw", tmp_path / "out"
    proc = run_gold("import", "--real", real_data, "--out", raw)
    assert "no CRS" in proc.stderr and "not SAR" in proc.stderr
    scenes = ["gold_sample", "italy_sardinia", "urban_lpem4", "yellow_river"]
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [f"{s}_{r}.tif" for s in scenes for r in "ABE"] + ["gold_sample_D.tif"])
    with rasterio.open(raw / "yellow_river_A.tif") as a, rasterio.open(raw / "yellow_river_B.tif") as b:
        assert a.crs is None and a.transform == Affine.identity() and (a.height, a.width) == (343, 291)
        assert b.count == 1 and b.dtypes[0] == "float32" and b.tags()["units"] == "dn"
    with rasterio.open(raw / "gold_sample_A.tif") as a:
        assert (a.count, a.height, a.width) == (3, 305, 305)        # frame cropped, alpha dropped
    run_gold("preprocess", "--raw", raw, "--out", out, "--tile", 128, "--format", "png")
    rows = kept_rows(out)
    for scene in scenes:                                             # each scene split on its own grid
        assert {r["split"] for r in rows if r["scene"] == scene} == set(SPLITS), scene
    assert_leak_free(out, raw, scenes)
    from PIL import Image
    for row in rows[:8]:
        for role in ("A", "B", "label"):
            img = np.asarray(Image.open(out / "png" / row["split"] / role / f"{row['tile']}.png"))
            assert img.shape == (128, 128, 3) and img.dtype == np.uint8


def test_ombria_import_keeps_the_published_split(run_gold, tmp_path, real_data):
    out = tmp_path / "ombria"
    src = real_data / "ombria"
    proc = run_gold("import", "--ombria", src, "--out", out, "--limit", 20, "--val", 0.2)
    rows = read_manifest(out)
    by_split = {s: {r["number"] for r in rows if r["split"] == s} for s in SPLITS}
    assert {s: len(v) for s, v in by_split.items()} == {"train": 16, "val": 4, "test": 20}
    published_test = sorted(p.stem.split("_")[-1] for p in (src / "OmbriaS2" / "test" / "BEFORE").glob("*.png"))
    assert sorted(by_split["test"]) == published_test[:20]                  # the published test tiles, kept
    assert not (by_split["val"] | by_split["train"]) & set(published_test)  # validation only from train
    for r in rows:
        with rasterio.open(out / r["split"] / "B" / f"{r['tile']}.tif") as b, \
                rasterio.open(out / r["split"] / "label" / f"{r['tile']}.tif") as e:
            assert b.tags()["units"] == "amplitude_dn" and b.dtypes[0] == "uint8" and b.crs is None
            assert set(np.unique(e.read(1))) <= {0, 1}
            assert int(r["changed_pixels"]) == int(e.read(1).sum())
    assert "pixel grids" in proc.stderr
    again = run_gold("import", "--ombria", src, "--out", out, check=False)
    assert again.returncode == 2 and "--overwrite" in again.stderr.strip().splitlines()[-1]
