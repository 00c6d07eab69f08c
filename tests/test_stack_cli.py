"""A stacked model across process boundaries: a network run and a classic run on the same tiles, mixed by
`gold train model.variant=stack`, scored by `gold evaluate` and mapping a new scene through `gold predict`."""
import json

import numpy as np
import pytest

from conftest import json_summary as _summary
from gold.io import read_raster

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stack_of_a_network_and_the_classic_trains_evaluates_and_predicts(run_gold, tmp_path):
    run_gold("synth", "--out", tmp_path / "raw", "--size", 192, "--seed", 0)
    run_gold("synth", "--out", tmp_path / "unseen", "--size", 128, "--seed", 1, "--base", "unseen")
    run_gold("preprocess", "--raw", tmp_path / "raw", "--out", tmp_path / "tiles", "--tile", 64, "--stride", 64)
    data = f"data.root={tmp_path / 'tiles'}"
    run_gold("train", "--out", tmp_path / "net", data, "model.variant=lightweight", "epochs=1", "max_batches=3",
             "data.crop=48", "data.batch_size=2")
    run_gold("train", "--out", tmp_path / "classic", data, "model.variant=classic", "classic.max_iter=20",
             "classic.per_tile=300")
    proc = run_gold("train", "--out", tmp_path / "stack", data, "model.variant=stack",
                    "stack.members=[net,classic]", "stack.weight_step=0.25")       # relative to the working folder
    summary = _summary(proc.stdout)
    assert summary["variant"] == "stack" and summary["val_f1"] >= max(summary["val_member_f1"]) - 1e-9
    assert summary["weights"][0] in (0, 0.25, 0.5, 0.75, 1) and sum(summary["weights"]) == pytest.approx(1)

    run_gold("evaluate", "--run", tmp_path / "stack")
    scores = json.loads((tmp_path / "stack" / "test_scores.json").read_text())
    assert scores["student"]["f1"] == pytest.approx(summary["test"]["student"]["f1"], abs=1e-6)

    u = tmp_path / "unseen"
    out = _summary(run_gold("predict", "--model", tmp_path / "stack" / "stack.json", "--opt-t1", u / "unseen_A.tif",
                            "--sar-t2", u / "unseen_B.tif", "--label", u / "unseen_E.tif", "--out", tmp_path / "pred",
                            "--tile", 64, "--overlap", 16, "--device", "cpu").stdout)
    assert out["model"]["variant"] == "stack" and out["windows"]["count"] == 9
    mask = read_raster(tmp_path / "pred" / "change_mask.tif")[0][0]
    assert 0 < (mask == 1).mean() < 1 and np.isin(mask, (0, 1)).all()

    again = run_gold("train", "--out", tmp_path / "stack2", data, "model.variant=stack", "stack.members=[net]",
                     check=False)
    assert again.returncode == 2 and "stack.members must name two runs, got 1" in again.stderr
    assert not (tmp_path / "stack2").exists()
