"""The analyst's workflow on a real scene, end to end with the `gold` command (skips without ../shared):
a partially labelled scene with raw 8-bit SAR and no units tag -> preprocess -> train (threshold chosen on
validation) -> predict the whole scene from the raw files -> scores on the held-out test blocks; plus a
separately labelled region used whole as validation, and a run evaluated from another working directory."""
import json

import numpy as np
import rasterio

from gold.heldout import score_on_split
from gold.io import write_geotiff

UNLABELLED = 7  # the annotator's nodata value in the label


def _annotators_scene(run_gold, real_data, tmp_path):
    "urban_lpem4 as an annotator holds it: uint8 optical, uint8 SAR (untagged), the right part unlabelled."
    imported = tmp_path / "imported"
    run_gold("import", "--real", real_data, "--scenes", "urban_lpem4", "--out", imported)
    with rasterio.open(imported / "urban_lpem4_A.tif") as ds:
        a, tr = ds.read(), ds.transform
    with rasterio.open(imported / "urban_lpem4_B.tif") as ds:
        b = np.clip(ds.read(), 0, 255).astype(np.uint8)
    with rasterio.open(imported / "urban_lpem4_E.tif") as ds:
        e = ds.read(1)
    raw, region = tmp_path / "raw", tmp_path / "region"
    left, right = e.copy(), e.copy()
    left[:, 380:] = UNLABELLED                  # labelled: the left three quarters
    right[:, :380] = UNLABELLED                 # a separately labelled region: the rest
    for folder, label in ((raw, left), (region, right)):
        write_geotiff(folder / "u_A.tif", a, None, tr)
        write_geotiff(folder / "u_B.tif", b, None, tr)
        write_geotiff(folder / "u_E.tif", label, None, tr, nodata=UNLABELLED)
    return raw, region, e


def test_partial_scene_workflow(run_gold, tmp_path, real_data):
    raw, region, truth = _annotators_scene(run_gold, real_data, tmp_path)
    tiles, val_tiles, run, pred = (tmp_path / n for n in ("tiles", "val_tiles", "run", "pred"))
    run_gold("preprocess", "--raw", raw, "--out", tiles, "--tile", 64)
    run_gold("preprocess", "--raw", region, "--out", val_tiles, "--tile", 64, "--val", 1, "--test", 0)
    # relative paths, typed from the working folder as a user does
    proc = run_gold("train", "--out", run, "data.root=tiles", "data.val_root=val_tiles",
                    "model.variant=lightweight", "epochs=1", "data.crop=64", "data.batch_size=4", "max_batches=3")
    assert "threshold chosen on validation" in proc.stderr, proc.stderr[-2000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    threshold = summary["thresholds"]["student"]
    assert 0 < threshold < 1
    # the whole scene, from the raw files the annotator has: 8-bit SAR with no units tag, as in training
    run_gold("predict", "--model", run / "student.pt", "--opt-t1", raw / "u_A.tif", "--sar-t2", raw / "u_B.tif",
             "--out", pred)
    with rasterio.open(pred / "change_mask.tif") as ds:
        mask = ds.read(1)
    assert mask.shape == truth.shape and set(np.unique(mask[:, 380:])) <= {0, 1}   # unlabelled part mapped too
    scores = score_on_split(pred / "change_mask.tif", tiles, "test")
    from gold.splits import read_manifest
    df = read_manifest(tiles)
    test = df[df.kept & (df.split == "test")]
    covered = np.zeros(truth.shape, bool)
    for r in test.itertuples():
        covered[r.row_off:r.row_off + 64, r.col_off:r.col_off + 64] = True
    covered[:, 380:] = False                                       # unlabelled there
    assert scores["tiles"] == len(test) and scores["unpredicted"] == 0
    assert scores["tp"] + scores["fp"] + scores["fn"] + scores["tn"] == int(covered.sum())
    assert scores["tp"] + scores["fn"] == int((truth[covered] > 0).sum())
    # the run works from any working directory, and a data folder that is gone is named as missing
    elsewhere = tmp_path / "elsewhere"; elsewhere.mkdir()
    ev = run_gold("evaluate", "--run", run, "--split", "test", cwd=elsewhere)
    assert ev.stdout.startswith("test: F1 "), ev.stdout
    tiles.rename(tmp_path / "moved")
    gone = run_gold("evaluate", "--run", run, "--split", "test", cwd=elsewhere, check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr and str(tiles) in gone.stderr, gone.stderr
