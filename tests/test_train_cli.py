"""`gold train` / `gold evaluate` across process boundaries: smoke config, torchrun DDP, bad input."""
import json
import os
import subprocess

import pytest

from conftest import ROOT, gold_exe, run_torchrun

SMOKE = ROOT / "configs" / "smoke.yaml"


def _summary(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run shared by the tests of this module: (run folder, data folder)."""
    tmp = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "GOLD_PROGRESS": "0"}
    proc = subprocess.run([gold_exe(), "train", "--config", SMOKE, "--out", tmp / "run",
                           f"data.root={tmp / 'tiles'}"], capture_output=True, text=True, env=env, cwd=tmp,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", tmp / "tiles", _summary(proc.stdout)


def test_smoke_config_synthesises_trains_and_tests(smoke_run):
    run, tiles, summary = smoke_run
    for name in ("config.yaml", "environment.json", "metrics.csv", "last.pt", "best.pt", "student.pt",
                 "test_metrics.json"):
        assert (run / name).is_file(), name
    assert (tiles / "manifest.csv").is_file()           # the data was synthesised and preprocessed
    test = json.loads((run / "test_metrics.json").read_text())
    assert 0.0 <= test["student"]["f1"] <= 1.0 and test["student"]["tp"] + test["student"]["fn"] > 0
    assert summary["best_epoch"] == 1


def test_evaluate_prints_and_saves_scores(smoke_run, run_gold):
    run, _, _ = smoke_run
    proc = run_gold("evaluate", "--run", run, "--split", "test", "--save-maps")
    assert proc.stdout.startswith("test: F1 ")
    scores = json.loads((run / "test_scores.json").read_text())
    assert scores["student"] == json.loads((run / "test_metrics.json").read_text())["student"]
    assert any((run / "maps" / "test").glob("*_errors.png"))


def test_unknown_config_key_stops_before_training(run_gold, tmp_path):
    proc = run_gold("train", "--config", SMOKE, "--out", tmp_path / "run", "optim.momentum=0.9", check=False)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'optim.momentum'" in lines[0]


def test_data_without_train_split_stops_before_training(run_gold, tmp_path):
    (tmp_path / "tiles" / "val" / "A").mkdir(parents=True)
    proc = run_gold("train", "--config", SMOKE, "--out", tmp_path / "run", f"data.root={tmp_path / 'tiles'}",
                    "data.synth=null", check=False)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no train split" in lines[0] and "tiles" in lines[0]


def test_checkpoint_with_another_band_layout_is_refused(smoke_run, run_gold, tmp_path):
    run, _, _ = smoke_run
    run_gold("synth", "--out", tmp_path / "raw", "--size", 256, "--sar-bands", 2)
    run_gold("preprocess", "--raw", tmp_path / "raw", "--out", tmp_path / "tiles2", "--tile", 64)
    proc = run_gold("evaluate", "--run", run, "--data", tmp_path / "tiles2", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "student.pt" in lines[0] and "1 SAR" in lines[0] and "+ 2" in lines[0]


def test_torchrun_two_processes_agree_and_write_one_run(tmp_path):
    proc = run_torchrun(["train", "--config", SMOKE, "--out", tmp_path / "run", f"data.root={tmp_path / 'tiles'}",
                         "data.batch_size=2", "max_batches=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = _summary(proc.stdout)
    sums = summary["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]          # both ranks hold bit-identical weights
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["best.pt", "config.yaml", "environment.json", "last.pt", "metrics.csv", "student.pt",
                     "teacher.pt", "test_metrics.json"], files   # one set of files, no per-rank copies or temporaries
    assert proc.stdout.count('"rank_checksums"') == 1     # only rank 0 printed the summary
