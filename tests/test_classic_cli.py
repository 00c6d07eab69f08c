"""The classic pixel classifier as a model, across process boundaries: synth -> preprocess -> `gold train
model.variant=classic` -> `gold evaluate` -> `gold predict` -> `gold map`, and the refusals on the way."""
import json
import os
import pickle

import numpy as np
import pytest

from conftest import json_summary as _summary
from gold.io import read_raster

pytestmark = pytest.mark.usefixtures("one_thread")


def test_classic_run_evaluates_and_maps_a_new_scene(run_gold, tmp_path):
    run_gold("synth", "--out", tmp_path / "raw", "--size", 192, "--seed", 0)
    run_gold("synth", "--out", tmp_path / "unseen", "--size", 160, "--seed", 1, "--base", "unseen")
    run_gold("preprocess", "--raw", tmp_path / "raw", "--out", tmp_path / "tiles", "--tile", 64, "--stride", 64)
    run = tmp_path / "run"
    proc = run_gold("train", "--out", run, "model.variant=classic", f"data.root={tmp_path / 'tiles'}",
                    "classic.max_iter=30", "classic.per_tile=500")
    summary = _summary(proc.stdout)
    assert sorted(p.name for p in run.iterdir()) == ["classic.json", "config.yaml", "environment.json",
                                                     "metrics.csv", "test_metrics.json"]
    recorded = json.loads((run / "test_metrics.json").read_text())
    assert recorded["student"]["f1"] == pytest.approx(summary["test"]["student"]["f1"])

    proc = run_gold("evaluate", "--run", run)
    assert proc.stdout.startswith("test: F1 ")
    scores = json.loads((run / "test_scores.json").read_text())
    assert scores["threshold"] == summary["thresholds"]["student"]
    assert abs(scores["student"]["f1"] - recorded["student"]["f1"]) < 1e-3        # the same model, reloaded

    pred = tmp_path / "pred"
    u = tmp_path / "unseen"
    proc = run_gold("predict", "--model", run / "classic.json", "--opt-t1", u / "unseen_A.tif", "--sar-t2",
                    u / "unseen_B.tif", "--label", u / "unseen_E.tif", "--out", pred, "--tile", 64, "--overlap", 16,
                    "--device", "cpu")
    out = _summary(proc.stdout)
    for name in ("probability.tif", "change_mask.tif", "change_polygons.geojson", "errors.tif", "metrics.json",
                 "summary.json"):
        assert (pred / name).is_file(), name
    assert out["model"]["variant"] == "classic" and out["windows"]["count"] == 9 and out["precision"] == "fp32"
    label = read_raster(u / "unseen_E.tif")[0][0]
    changed = float((label > 0).mean())
    everything = 2 * changed / (1 + changed)                 # F1 of calling every pixel change
    metrics = json.loads((pred / "metrics.json").read_text())
    assert metrics["f1"] > everything + 0.1, (metrics, everything)
    mask = read_raster(pred / "change_mask.tif")[0][0]
    assert 0 < (mask == 1).mean() < 1
    assert json.loads((pred / "change_polygons.geojson").read_text())["features"]

    page = tmp_path / "review.html"
    run_gold("map", "--scene", u, "--pred", pred, "--out", page)
    assert page.stat().st_size > 10_000

    tta = run_gold("predict", "--model", run / "classic.json", "--opt-t1", u / "unseen_A.tif", "--sar-t2",
                   u / "unseen_B.tif", "--out", tmp_path / "tta", "--tile", 64, "--overlap", 16, "--tta", check=False)
    assert tta.returncode != 0 and "--tta: test-time augmentation is for networks" in tta.stderr
    assert not (tmp_path / "tta").exists()                   # the folder it made is gone again
    again = run_gold("train", "--out", run, "model.variant=classic", f"data.root={tmp_path / 'tiles'}", check=False)
    assert again.returncode != 0 and "run folder already holds a run" in again.stderr


def test_crafted_model_file_is_refused_and_runs_no_code(run_gold, tmp_path):
    marker = tmp_path / "pwned"

    class _Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "classic.json").write_bytes(b"{" + pickle.dumps(_Evil()))        # looks like JSON at first byte
    run_gold("synth", "--out", tmp_path / "raw", "--size", 64, "--seed", 0)
    proc = run_gold("predict", "--model", tmp_path / "classic.json", "--opt-t1", tmp_path / "raw" / "synth_A.tif",
                    "--sar-t2", tmp_path / "raw" / "synth_B.tif", "--out", tmp_path / "pred", check=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "classic.json: not a classic model file (not JSON)" in lines[0], proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "pred").exists() or not any((tmp_path / "pred").iterdir())
