"""OMBRIA end to end as a user runs it: import, train GOLD briefly, evaluate, predict a test tile (skips without ../shared)."""
import json

import numpy as np
import rasterio


def test_ombria_import_train_evaluate_predict(run_gold, tmp_path, real_data):
    tiles, run = tmp_path / "ombria", tmp_path / "run"
    run_gold("import", "--ombria", real_data / "ombria", "--out", tiles, "--limit", 24, "--val", 0.25)
    proc = run_gold("train", "--out", run, f"data.root={tiles}", "model.variant=lightweight", "epochs=1",
                    "data.crop=64", "data.batch_size=4", "max_batches=3", "loss={warmup: 1.0}")
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert "CE class weights" in proc.stderr and "threshold chosen on validation" in proc.stderr, proc.stderr[-2000:]
    test = summary["test"]
    assert set(test) == {"student", "teacher"}                     # OMBRIA has optical t2: the teacher is scored too
    n_pixels = 24 * 256 * 256                                        # 24 test tiles, each pixel scored once
    for who in ("student", "teacher"):
        s = test[who]
        assert s["tp"] + s["fp"] + s["fn"] + s["tn"] == n_pixels, (who, s)
    assert 0 < summary["thresholds"]["student"] < 1
    # gold evaluate reads the run from another working directory and uses the stored threshold
    other = tmp_path / "elsewhere"; other.mkdir()
    ev = run_gold("evaluate", "--run", run, "--split", "test", "--data", tiles, cwd=other)
    scores = json.loads((run / "test_scores.json").read_text())
    assert scores["threshold"] == summary["thresholds"]["student"] and ev.stdout.startswith("test: F1 ")
    # training scores under the run's precision (bf16 on a CPU with AMX), evaluate in float32: nearly the same
    assert abs(scores["student"]["f1"] - test["student"]["f1"]) < 0.01
    # gold predict on a raw test tile: 8-bit SAR read as amplitude DN, as in training, with no manual tag
    name = sorted((tiles / "test" / "A").glob("*.tif"))[0].stem
    run_gold("predict", "--model", run / "student.pt", "--opt-t1", tiles / "test" / "A" / f"{name}.tif",
             "--sar-t2", tiles / "test" / "B" / f"{name}.tif", "--label", tiles / "test" / "label" / f"{name}.tif",
             "--out", tmp_path / "pred")
    with rasterio.open(tmp_path / "pred" / "probability.tif") as p:
        assert (p.height, p.width) == (256, 256) and p.crs is None
        prob = p.read(1)
    assert prob.min() < prob.max()
    m = json.loads((tmp_path / "pred" / "metrics.json").read_text())
    assert np.isclose(m["tp"] + m["fp"] + m["fn"] + m["tn"], 256 * 256), m
