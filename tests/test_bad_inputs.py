"""Issue 32: bad input never loses a user's files, never shows a traceback, never scores the wrong data.

Each test is named after its case; every one runs the `gold` command as a user does and checks the exit code,
the one line on stderr, and what is (not) left on disk.
"""
import csv
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from PIL import Image

from conftest import ROOT, gold_exe

SMOKE = ROOT / "configs" / "smoke.yaml"
OMBRIA = {"A": ("OmbriaS2", "BEFORE", "S2_before"), "B": ("OmbriaS1", "AFTER", "S1_after"),
          "C": ("OmbriaS2", "AFTER", "S2_after"), "label": ("OmbriaS1", "MASK", "S1_mask")}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Tiny data: one thread per process, immune to a busy machine."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def gold(*args, cwd):
    """`gold ARGS` in a subprocess (never checked: the tests look at the exit code themselves)."""
    env = {**os.environ, "GOLD_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([gold_exe(), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def one_error_line(proc, command, *needles):
    """Exit code 2, no traceback, and one `gold COMMAND: error:` line holding every needle, last on stderr.

    Log lines of the work done before the problem showed (INFO) may precede it.
    """
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(f"gold {command}: error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr[-3000:])
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    assert all(" INFO " in line for line in lines[:-1]), proc.stderr[-3000:]
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def fake_ombria(root, train=("0001", "0002", "0003", "0004", "0005"), test=("0006", "0007"), size=32):
    """A tiny OMBRIA-layout tree of PNGs: random optical and SAR, a changed rectangle per mask."""
    rng = np.random.default_rng(0)
    for split, numbers in (("train", train), ("test", test)):
        for n in numbers:
            for role, (sensor, sub, prefix) in OMBRIA.items():
                p = root / sensor / split / sub / f"{prefix}_{n}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                if role == "label":
                    m = np.zeros((size, size), np.uint8)
                    m[4:10 + int(n[-1]), 4:20] = 255
                    arr = m
                else:
                    arr = rng.integers(0, 256, (size, size) if role == "B" else (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(p)
    return root


def tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run (1 epoch of the lightweight network on a 256 px synthetic scene): (tmp, run, tiles)."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "a").mkdir()
    ok(gold("train", "--config", SMOKE, "--out", tmp / "a" / "run", f"data.root={tmp / 'a' / 'tiles'}", cwd=tmp))
    return tmp, tmp / "a" / "run", tmp / "a" / "tiles"


# -- 1. a user's folder is never deleted ------------------------------------------------------------------------
def test_import_overwrite_never_deletes_a_users_folder(tmp_path):
    src = fake_ombria(tmp_path / "OMBRIA")
    user = tmp_path / "u"
    user.mkdir()
    (user / "thesis.txt").write_text("x")
    for flags in ((), ("--overwrite",)):
        proc = gold("import", "--ombria", src, "--out", user, *flags, cwd=tmp_path)
        one_error_line(proc, "import", "u:", "not made by gold import --ombria")
    assert tree(user) == {user.relative_to(user) / "thesis.txt": b"x"}
    # the same rule everywhere: an import's own output is replaced only with --overwrite, never by preprocess
    out = tmp_path / "tiles"
    ok(gold("import", "--ombria", src, "--out", out, cwd=tmp_path))
    one_error_line(gold("import", "--ombria", src, "--out", out, cwd=tmp_path), "import", "pass --overwrite")
    ok(gold("import", "--ombria", src, "--out", out, "--overwrite", "--val", 0.4, cwd=tmp_path))
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 128, cwd=tmp_path))
    before = tree(out)
    proc = gold("preprocess", "--raw", tmp_path / "raw", "--out", out, "--tile", 64, "--overwrite", cwd=tmp_path)
    one_error_line(proc, "preprocess", "not made by gold preprocess")
    assert tree(out) == before


def test_train_and_predict_never_write_into_a_users_folder(smoke, tmp_path):
    _, run, _ = smoke
    user = tmp_path / "u"
    user.mkdir()
    (user / "thesis.txt").write_text("x")
    (user / "probability.tif").write_text("my own file")
    proc = gold("train", "--config", SMOKE, "--out", user, "--overwrite", f"data.root={tmp_path / 'tiles'}",
                cwd=tmp_path)
    one_error_line(proc, "train", "u:", "not made by gold train")
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 128, cwd=tmp_path))
    proc = gold("predict", "--model", run / "student.pt", "--opt-t1", tmp_path / "raw" / "synth_A.tif", "--sar-t2",
                tmp_path / "raw" / "synth_B.tif", "--out", user, "--overwrite", "--tile", 64, "--overlap", 16,
                "--device", "cpu", cwd=tmp_path)
    one_error_line(proc, "predict", "u:", "not made by gold predict")
    assert sorted(p.name for p in user.iterdir()) == ["probability.tif", "thesis.txt"]
    assert (user / "probability.tif").read_text() == "my own file" and not (tmp_path / "tiles").exists()


# -- 2. one line, not a traceback ---------------------------------------------------------------------------------
def test_import_onto_a_file_is_one_line(tmp_path):
    src = fake_ombria(tmp_path / "OMBRIA")
    (tmp_path / "a_file").write_text("mine")
    proc = gold("import", "--ombria", src, "--out", tmp_path / "a_file", "--overwrite", cwd=tmp_path)
    one_error_line(proc, "import", "a_file", "not a folder")
    assert (tmp_path / "a_file").read_text() == "mine"


@pytest.mark.parametrize("value, needle", [
    ("epochs=abc", "epochs must be an integer, got 'abc'"),
    ("optim.lr=fast", "lr must be a number, got 'fast'"),
    ("epochs=0", "epochs must be at least 1"),
    ("epochs=-1", "epochs must be at least 1"),
    ("data.crop=100", "crop must be a positive multiple of 16"),
    ("data.batch_size=0", "batch_size must be at least 1"),
    ("threshold=2", "threshold must be 'auto' or a number in [0, 1]"),
])
def test_train_bad_config_value_is_one_line_and_makes_no_folder(tmp_path, value, needle):
    proc = gold("train", "--config", SMOKE, "--out", tmp_path / "run", f"data.root={tmp_path / 'tiles'}", value,
                cwd=tmp_path)
    one_error_line(proc, "train", needle)
    assert not (tmp_path / "run").exists() and not (tmp_path / "tiles").exists()   # checked before anything


def test_train_crop_larger_than_the_tiles_makes_no_folder(smoke):
    tmp, _, tiles = smoke
    proc = gold("train", "--config", SMOKE, "--out", tmp / "crop_run", f"data.root={tiles}", "data.synth=null",
                "data.crop=128", cwd=tmp)
    one_error_line(proc, "train", "manifest.csv", "data.crop 128 is larger than the train tiles (64 px)")
    assert proc.stderr.count("\n") == 1 and not (tmp / "crop_run").exists()      # refused before any work


def test_config_yaml_syntax_error_names_line_and_column(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("name: x\nepochs: 2\ndata: {crop: 64\n")
    proc = gold("train", "--config", cfg, "--out", tmp_path / "run", cwd=tmp_path)
    one_error_line(proc, "train", "broken.yaml", "line 4, column 1")


def test_yaml_grid_syntax_error_names_line_and_column(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: g\ntemplate: train_eval\nruns:\n  - {LABEL: a, EPOCHS: [1}\n")
    proc = gold("run", grid, "--out", tmp_path / "runs", cwd=tmp_path)
    one_error_line(proc, "run", "grid.yaml", "line 4, column")
    assert not (tmp_path / "runs").exists()


def test_evaluate_batch_size_zero_is_one_line(smoke):
    tmp, run, _ = smoke
    one_error_line(gold("evaluate", "--run", run, "--batch-size", 0, cwd=tmp), "evaluate", "--batch-size")


def test_map_of_a_four_band_scene(smoke, tmp_path):
    import torch
    from gold.data import NormStats, sar_to_space
    from gold.io import read_raster
    from gold.models import build_model
    from gold.train import save_checkpoint, student_checkpoint
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 128, "--opt-bands", 4, cwd=tmp_path))
    a = read_raster(tmp_path / "raw" / "synth_A.tif")[0].astype(np.float64)
    b = sar_to_space(read_raster(tmp_path / "raw" / "synth_B.tif")[0], "linear")
    stats = NormStats(a.mean((1, 2)).tolist(), a.std((1, 2)).tolist(), b.mean((1, 2)).tolist(),
                      b.std((1, 2)).tolist(), sar_units=["linear"])
    torch.manual_seed(0)
    ckpt = save_checkpoint(student_checkpoint(build_model("lightweight", 4, 1, teacher=False), stats,
                                              {"threshold": 0.5}), tmp_path / "student.pt")
    ok(gold("predict", "--model", ckpt, "--opt-t1", tmp_path / "raw" / "synth_A.tif", "--sar-t2",
            tmp_path / "raw" / "synth_B.tif", "--out", tmp_path / "pred", "--tile", 64, "--overlap", 16, "--device", "cpu",
            cwd=tmp_path))
    ok(gold("map", "--scene", tmp_path / "raw", "--pred", tmp_path / "pred", "--out", tmp_path / "map.html",
            cwd=tmp_path))
    assert (tmp_path / "map.html").stat().st_size > 10_000
    with rasterio.open(tmp_path / "raw" / "synth_A.tif") as ds:      # the 4th band is a band, not alpha
        assert ds.count == 4 and rasterio.enums.ColorInterp.alpha not in ds.colorinterp


# -- 3. never the wrong data silently -----------------------------------------------------------------------------
def test_import_negative_limit_is_refused(tmp_path):
    src = fake_ombria(tmp_path / "OMBRIA")
    proc = gold("import", "--ombria", src, "--out", tmp_path / "tiles", "--limit", -1, cwd=tmp_path)
    one_error_line(proc, "import", "--limit", "at least 1")
    assert not (tmp_path / "tiles").exists()


@pytest.mark.parametrize("threshold", ["2", "-1"])
def test_evaluate_threshold_out_of_range_keeps_the_scores(smoke, threshold):
    tmp, run, _ = smoke
    ok(gold("evaluate", "--run", run, cwd=tmp))
    before = (run / "test_scores.json").read_bytes()
    one_error_line(gold("evaluate", "--run", run, "--threshold", threshold, cwd=tmp), "evaluate", "--threshold",
                   "[0, 1]")
    assert (run / "test_scores.json").read_bytes() == before


def test_moved_run_is_not_scored_on_another_data_folder(smoke):
    tmp, run, _ = smoke
    other = tmp / "b"
    ok(gold("synth", "--out", other / "raw", "--size", 256, "--seed", 1, cwd=tmp))
    ok(gold("preprocess", "--raw", other / "raw", "--out", other / "tiles", "--tile", 64, cwd=tmp))
    moved = other / "run"
    shutil.copytree(run, moved)                        # b/run next to b/tiles: the same relative path ../tiles
    (moved / "test_scores.json").unlink(missing_ok=True)
    one_error_line(gold("evaluate", "--run", moved, cwd=tmp), "evaluate", str(other / "tiles"),
                   "not the data the run", "--data")
    assert not (moved / "test_scores.json").exists()
    ok(gold("evaluate", "--run", moved, "--data", other / "tiles", cwd=tmp))   # named explicitly: scored
    assert json.loads((moved / "test_scores.json").read_text())["data"] == "../tiles"


def test_predict_all_nan_sar_is_an_error(smoke, tmp_path):
    _, run, _ = smoke
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 128, cwd=tmp_path))
    sar = tmp_path / "raw" / "synth_B.tif"
    with rasterio.open(sar, "r+") as ds:
        ds.write(np.full((ds.count, ds.height, ds.width), np.nan, np.float32))
    proc = gold("predict", "--model", run / "student.pt", "--opt-t1", tmp_path / "raw" / "synth_A.tif",
                "--sar-t2", sar, "--label", tmp_path / "raw" / "synth_E.tif", "--out", tmp_path / "pred",
                "--tile", 64, "--overlap", 16, "--device", "cpu", cwd=tmp_path)
    one_error_line(proc, "predict", "synth_B.tif", "nothing to predict")
    assert not (tmp_path / "pred").exists() or not any((tmp_path / "pred").iterdir())


def test_evaluate_with_no_labelled_pixel_is_an_error(smoke, tmp_path):
    tmp, run, tiles = smoke
    blank = tmp_path / "tiles"
    shutil.copytree(tiles, blank)
    for label in (blank / "test" / "label").glob("*.tif"):          # every test pixel unlabelled
        with rasterio.open(label, "r+") as ds:
            ds.write(np.full((ds.height, ds.width), 255, np.uint8), 1)
    before = (run / "test_scores.json").read_bytes() if (run / "test_scores.json").exists() else None
    proc = gold("evaluate", "--run", run, "--data", blank, cwd=tmp)
    one_error_line(proc, "evaluate", str(blank), "no labelled pixel")
    after = (run / "test_scores.json").read_bytes() if (run / "test_scores.json").exists() else None
    assert after == before                                           # no F1 0 written over the scores


def test_split_raster_on_another_grid_is_refused(tmp_path):
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 128, cwd=tmp_path))
    with rasterio.open(tmp_path / "raw" / "synth_A.tif") as a:
        crs, t = a.crs, a.transform
    codes = np.ones((64, 64), np.uint8)
    codes[:16] = 2                                     # a hand-drawn validation strip
    with rasterio.open(tmp_path / "raw" / "synth_S.tif", "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="uint8", crs=crs, transform=t @ rasterio.Affine.scale(2)) as ds:
        ds.write(codes, 1)
    proc = gold("preprocess", "--raw", tmp_path / "raw", "--out", tmp_path / "tiles", "--tile", 64, cwd=tmp_path)
    one_error_line(proc, "preprocess", "synth_S.tif", "split raster is 64x64 px", "optical t1 128x128")
    assert not (tmp_path / "tiles").exists()


def test_map_show_probability_without_probability_tif_is_refused(smoke, tmp_path):
    _, run, _ = smoke
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 128, cwd=tmp_path))
    ok(gold("predict", "--model", run / "student.pt", "--opt-t1", tmp_path / "raw" / "synth_A.tif", "--sar-t2",
            tmp_path / "raw" / "synth_B.tif", "--out", tmp_path / "pred", "--tile", 64, "--overlap", 16, "--device", "cpu",
            cwd=tmp_path))
    (tmp_path / "pred" / "probability.tif").unlink()
    proc = gold("map", "--scene", tmp_path / "raw", "--pred", tmp_path / "pred", "--out", tmp_path / "map.html",
                "--show", "probability", cwd=tmp_path)
    one_error_line(proc, "map", "--show probability", "probability.tif")
    assert not (tmp_path / "map.html").exists()


# -- 4. not misleading, not half-made -----------------------------------------------------------------------------
def test_predict_tile_128_needs_no_overlap(smoke, tmp_path):
    _, run, _ = smoke
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 192, cwd=tmp_path))
    proc = ok(gold("predict", "--model", run / "student.pt", "--opt-t1", tmp_path / "raw" / "synth_A.tif",
                   "--sar-t2", tmp_path / "raw" / "synth_B.tif", "--out", tmp_path / "pred", "--tile", 128,
                   "--device", "cpu", cwd=tmp_path))
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["windows"]["tile"] == 128 and summary["windows"]["overlap"] == 32


def test_tiles_lacking_sar_are_dropped_as_no_sar(tmp_path):
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 256, cwd=tmp_path))
    with rasterio.open(tmp_path / "raw" / "synth_B.tif", "r+") as ds:
        b = ds.read()
        b[:, 128:] = np.nan                            # no SAR over the bottom half
        ds.write(b)
    ok(gold("preprocess", "--raw", tmp_path / "raw", "--out", tmp_path / "tiles", "--tile", 64, cwd=tmp_path))
    with open(tmp_path / "tiles" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    bottom = [r["reason"] for r in rows if int(r["row_off"]) >= 128]
    assert bottom and set(bottom) == {"no_sar"}, set(bottom)


def test_training_without_validation_warns_once_and_records_no_val_score(tmp_path):
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 256, cwd=tmp_path))
    ok(gold("preprocess", "--raw", tmp_path / "raw", "--out", tmp_path / "tiles", "--tile", 64, "--val", 0,
            cwd=tmp_path))
    proc = ok(gold("train", "--config", SMOKE, "--out", tmp_path / "run", f"data.root={tmp_path / 'tiles'}",
                   "data.synth=null", cwd=tmp_path))
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == len(set(w.split(" ", 1)[1] for w in warnings)), warnings    # each warning once
    assert sum("validation" in w for w in warnings) == 1, warnings                    # the one fact, said once
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["val_iou"] is None, summary


def test_import_summarises_instead_of_a_line_per_png(tmp_path):
    src = fake_ombria(tmp_path / "OMBRIA")
    proc = ok(gold("import", "--ombria", src, "--out", tmp_path / "tiles", cwd=tmp_path))
    info = [line for line in proc.stderr.splitlines() if " INFO " in line]
    assert len(info) <= 3 and any("OMBRIA:" in line for line in info), info


def test_review_map_outside_jupyter_prints_one_line_not_a_widget(smoke, tmp_path):
    _, run, _ = smoke
    ok(gold("synth", "--out", tmp_path / "raw", "--size", 128, cwd=tmp_path))
    ok(gold("predict", "--model", run / "student.pt", "--opt-t1", tmp_path / "raw" / "synth_A.tif", "--sar-t2",
            tmp_path / "raw" / "synth_B.tif", "--out", tmp_path / "pred", "--tile", 64, "--overlap", 16, "--device", "cpu",
            cwd=tmp_path))
    import sys
    code = ("from gold.review import review_map\n"
            "m = review_map('raw', 'pred', basemap=False)\n"
            "print(repr(m))\n"
            "m._ipython_display_()\n"
            "m.close()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("ReviewMap of scene synth") for line in lines), proc.stdout[:2000]
    assert "save_html" in lines[0]
