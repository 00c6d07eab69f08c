"""`gold run` / `gold report` end to end: papermill runs of the committed templates, failures, the parameters tag."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import ROOT

TEMPLATES = ROOT / "nbs" / "experiments"


def committed_templates():
    return sorted(TEMPLATES.glob("*.ipynb"))


def parameters_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]


def test_templates_are_skipped_by_nbdev_and_export_nothing():
    assert (TEMPLATES / ".notest").is_file()                       # nbdev_test skips the folder
    for path in committed_templates():
        assert "default_exp" not in path.read_text(), path       # nbdev_export writes nothing from them


@pytest.mark.parametrize("path", committed_templates(), ids=lambda p: p.stem)
def test_template_parameters_tag_survives_nbdev_clean(path, tmp_path):
    from gold.experiments import check_template, template_parameters
    nb = nbformat.read(path, as_version=4)
    cells = parameters_cells(nb)
    assert len(cells) == 1, f"{path.name}: {len(cells)} parameters cells"
    assert check_template(path) == [], check_template(path)
    params = template_parameters(path)
    assert {"SMOKE", "SEED", "OUT"} <= set(params) and all(k.isupper() for k in params)
    # dirty a copy the way Jupyter would (outputs, counts, extra cell metadata), clean it, and look again
    copy = tmp_path / path.name
    for c in nb.cells:
        c.metadata["collapsed"] = True
        if c.cell_type == "code":
            c.execution_count = 7
            c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="noise\n")]
    nbformat.write(nb, copy)
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run([str(bin_dir / "nbdev_clean"), "--fname", str(copy)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cleaned = nbformat.read(copy, as_version=4)
    assert all("collapsed" not in c.metadata for c in cleaned.cells)          # nbdev_clean did clean
    assert all(c.execution_count is None for c in cleaned.cells if c.cell_type == "code")
    kept = parameters_cells(cleaned)
    assert len(kept) == 1 and kept[0].source == cells[0].source              # ... and kept the tag
    assert template_parameters(copy) == params


def test_smoke_run_then_report(run_gold, tmp_path):
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    proc = run_gold("run", "train_eval", "-p", "SMOKE", "True", "--templates", TEMPLATES, "--out", runs)
    (run,) = [p for p in (runs / "train_eval").iterdir() if p.is_dir()]
    assert run.name.startswith("smoke-true-")
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert json.loads((run / "params.json").read_text())["params"] == {"SMOKE": True}
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics["student_f1"] <= 1 and "teacher_f1" in metrics and metrics["epochs"] == 1
    assert metrics["train_samples_per_s"] > 0 and metrics["mpixel_per_s"] > 0     # cost and speed are recorded
    assert abs(metrics["student_gflops"] - 28.03) < 0.1 and abs(metrics["student_params_m"] - 6.06) < 0.01
    executed = nbformat.read(run / "train_eval.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    for f in ("curves.png", "tiles.jpg", "train/student.pt", "train/metrics.csv"):
        assert (run / f).is_file(), f
    assert not (run / "train" / "last.pt").exists()                 # only the student checkpoint is kept
    assert (tmp_path / "data" / "experiments" / "synth256_t64_s0" / "manifest.csv").is_file()   # cwd = gold run's

    again = run_gold("run", "train_eval", "-p", "SMOKE", "True", "--templates", TEMPLATES, "--out", runs)
    assert again.stdout.startswith("skipped"), again.stdout

    rep = run_gold("report", "train_eval", "--runs", runs, "--reports", reports)
    table = pd.read_csv(reports / "train_eval.csv")
    assert len(table) == 1 and table.loc[0, "runs"] == 1
    assert abs(table.loc[0, "f1_mean"] - 100 * metrics["student_f1"]) < 1e-3
    assert (reports / "train_eval.md").read_text().count("| SMOKE=True |") == 1
    assert (reports / "figures" / "train_eval_scores.png").is_file()
    assert (reports / "figures" / "train_eval_curves.png").is_file()
    assert (reports / "figures" / "train_eval_tradeoff.png").is_file()          # accuracy against speed
    assert "train_eval" in (reports / "README.md").read_text()
    assert "f1_mean" in rep.stdout

    # the trained student predicts a whole (synthetic, labelled) scene through scene_predict
    ckpt = run / "train" / "student.pt"
    run_gold("run", "scene_predict", "-p", "SMOKE", "True", "-p", "CHECKPOINT", ckpt, "--templates", TEMPLATES,
             "--out", runs)
    (pred,) = [p for p in (runs / "scene_predict").iterdir() if p.is_dir()]
    scene = json.loads((pred / "metrics.json").read_text())["metrics"]
    assert scene["width"] == scene["height"] == 256 and 0 <= scene["scene_f1"] <= 1
    for f in ("probability.tif", "change_mask.tif", "change_polygons.geojson", "errors.tif", "summary.json"):
        assert (pred / "prediction" / f).is_file(), f
    assert (pred / "scene.jpg").is_file()
    run_gold("report", "scene_predict", "--runs", runs, "--reports", reports)
    assert abs(pd.read_csv(reports / "scene_predict.csv").loc[0, "f1_mean"] - 100 * scene["scene_f1"]) < 1e-3

    # a parameter that makes the notebook raise: recorded as failed, one-line error, non-zero exit
    bad = run_gold("run", "train_eval", "-p", "SMOKE", "True", "-p", "VARIANT", "huge", "--templates", TEMPLATES,
                   "--out", runs, check=False)
    assert bad.returncode != 0
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("gold run: error:") and "1 of 1 run(s) failed: smoke-true-variant-huge-" in last
    (failed,) = [p for p in (runs / "train_eval").iterdir() if p.name.startswith("smoke-true-variant-huge")]
    status = json.loads((failed / "status.json").read_text())
    assert status["status"] == "failed" and "VARIANT must be one of full, lightweight, fc_ef" in status["error"]


def test_failed_run_does_not_stop_the_grid(run_gold, tmp_path):
    """A grid whose first run raises: it is recorded as failed and the next run still executes."""
    tpl = tmp_path / "tiny.ipynb"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "python3"}})
    nb.cells = [nbformat.v4.new_code_cell("SMOKE = False\nLABEL = ''\nFAIL = False\nX = 1\nSEED = 0\nOUT = '.'",
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("if FAIL:\n    raise RuntimeError('this run was asked to fail')"),
                nbformat.v4.new_code_cell("from gold.experiments import record\n"
                                          "record({'student': {'f1': X / 10, 'iou': X / 20}}, OUT)")]
    nbformat.write(nb, tpl)
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: tinygrid\ntemplate: tiny.ipynb\nruns:\n  - {LABEL: broken, FAIL: true}\n"
                    "  - {LABEL: fine, X: 3}\nseeds: [0, 1]\n")
    proc = run_gold("run", "tiny.ipynb", "-f", grid, "--templates", tmp_path, "--out", tmp_path / "runs", check=False)
    assert proc.returncode == 2
    assert "2 of 4 run(s) failed" in proc.stderr
    lines = proc.stdout.splitlines()
    assert [l.split()[0] for l in lines] == ["failed", "completed", "failed", "completed"], lines
    runs = {p.name: p for p in (tmp_path / "runs" / "tinygrid").iterdir() if p.is_dir()}
    broken = [p for n, p in runs.items() if n.startswith("broken-seed0")][0]
    status = json.loads((broken / "status.json").read_text())
    assert status["status"] == "failed" and "this run was asked to fail" in status["error"]
    assert (broken / "tiny.ipynb").is_file()                       # the executed notebook shows where it stopped
    rep = run_gold("report", "tinygrid", "--runs", tmp_path / "runs", "--reports", tmp_path / "reports")
    table = pd.read_csv(tmp_path / "reports" / "tinygrid.csv")
    assert table["configuration"].tolist() == ["fine"] and table.loc[0, "runs"] == 2
    assert abs(table.loc[0, "f1_mean"] - 30.0) < 1e-9
    assert "this run was asked to fail" in (tmp_path / "reports" / "tinygrid.md").read_text()


@pytest.mark.parametrize("grid", sorted(TEMPLATES.glob("*.yaml")), ids=lambda p: p.stem)
def test_committed_grids_expand_to_valid_runs(run_gold, grid):
    """Every committed grid lists its runs (configurations x seeds) and names only models the kit builds."""
    import yaml
    from gold.baselines import BASELINES
    from gold.models import VARIANTS
    spec = yaml.safe_load(grid.read_text())
    proc = run_gold("run", grid.stem, "--list", "--templates", TEMPLATES)
    listed = [l for l in proc.stdout.splitlines() if l.strip()]
    expected = sum(len(r["seeds"] if "seeds" in r else spec.get("seeds") or [0]) for r in spec["runs"])
    assert len(listed) == expected, listed                     # an entry may run its own (fewer) seeds
    classic = ("classic", "stack") if spec["template"] == "block_eval" else ()   # the classic (and its stack): block_eval only
    for run in spec["runs"]:
        variant = {**(spec.get("params") or {}), **run}.get("VARIANT", "lightweight")
        assert variant in (*VARIANTS, *BASELINES, *classic), (grid.name, variant)


def test_block_protocol_smoke_classic_and_network(run_gold, tmp_path):
    """`block_eval` (the `real_scenes` grid's template): the classic classifier and a refined GOLD student scored on
    the same test blocks, each pixel once, the network also under --tta, both rows in one report."""
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    for variant in ("classic", "lightweight"):
        run_gold("run", "block_eval", "-p", "SMOKE", "True", "-p", "VARIANT", variant, "-p", "REFINE", "16",
                 "-p", "DATA_CACHE", tmp_path / "cache", "--templates", TEMPLATES, "--out", runs)
    found = {json.loads((p / "params.json").read_text())["params"]["VARIANT"]:
             json.loads((p / "metrics.json").read_text())["metrics"] for p in (runs / "block_eval").iterdir() if p.is_dir()}
    classic, net = found["classic"], found["lightweight"]
    assert classic["test_pixels"] == net["test_pixels"] > 0              # the same held-out pixels for both
    assert all(0 <= m["student_f1"] <= 1 and 0 < m["threshold"] < 1 for m in (classic, net))
    assert "tta_f1" in net and "tta_f1" not in classic
    cfg = next((runs / "block_eval").glob("*/train/config.yaml"))        # the classic run trains no network
    assert "refine: 16" in cfg.read_text()                               # the refiner was trained
    run_gold("report", "block_eval", "--runs", runs, "--reports", reports)
    table = pd.read_csv(reports / "block_eval.csv")
    assert len(table) == 2 and table["tta_f1_mean"].notna().sum() == 1
    assert "f1 --tta" in (reports / "block_eval.md").read_text()


def test_block_protocol_stack_mixes_the_classic_and_a_network(run_gold, tmp_path):
    """`block_eval` with VARIANT stack: the classic and STACK_NET trained in the run, their mix chosen on validation,
    scored on the same test blocks as a lone model."""
    runs = tmp_path / "runs"
    run_gold("run", "block_eval", "-p", "SMOKE", "True", "-p", "VARIANT", "stack", "-p", "STACK_NET", "fc_ef",
             "-p", "SAR_NORM", "auto", "-p", "DATA_CACHE", tmp_path / "cache", "--templates", TEMPLATES, "--out", runs)
    run = next(p for p in (runs / "block_eval").iterdir() if p.is_dir())
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["test_pixels"] > 0 and 0 <= metrics["student_f1"] <= 1 and "tta_f1" not in metrics
    stack = json.loads((run / "train" / "stack.json").read_text())
    assert [m["file"] for m in stack["members"]] == ["../network/student.pt", "../classic/classic.json"]
    assert 0 <= pd.read_csv(run / "train" / "metrics.csv").weight.iloc[0] <= 1


def test_teacher_first_trains_one_teacher_for_the_runs_that_share_it(run_gold, tmp_path):
    """`train_eval` with TEACHER_FIRST under a label budget: the first run trains the teacher alone under
    DATA_CACHE/teachers and learns from it frozen; a second run with the same recipe and seed (here with
    pseudo-labels at the level the teacher chose) reuses that teacher. Both score it on the held-back truth."""
    from gold.preprocess import PreprocessConfig, preprocess
    from gold.pseudo import label_budget_copy
    from gold.synth import SynthConfig, write_scenes
    write_scenes(tmp_path / "raw", 1, 0, SynthConfig(size=256))
    preprocess(tmp_path / "raw", tmp_path / "full", PreprocessConfig(tile=64, stride=64))
    label_budget_copy(tmp_path / "full", tmp_path / "budget", 0.25)
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    for pseudo in ("0", "auto"):
        run_gold("run", "train_eval", "-p", "SMOKE", "True", "-p", "ABLATION", "distill", "-p", "TEACHER_FIRST", "True",
                 "-p", "PSEUDO", pseudo, "-p", "DATA", tmp_path / "budget", "-p", "DATA_CACHE", cache,
                 "--templates", TEMPLATES, "--out", runs)
    teachers = list((cache / "teachers").iterdir())
    assert len(teachers) == 1 and (teachers[0] / "teacher.pt").is_file()
    folders = [p for p in (runs / "train_eval").iterdir() if p.is_dir()]
    done = {json.loads((p / "params.json").read_text())["params"]["PSEUDO"]: json.loads((p / "metrics.json").read_text())
            for p in folders}
    assert sorted(d["metrics"]["teacher_seconds"] > 0 for d in done.values()) == [False, True]  # trained once, reused
    assert {Path(d["info"]["teacher_from"]).name for d in done.values()} == {teachers[0].name}
    assert all(d["metrics"]["teacher_f1"] >= 0 for d in done.values())                 # the frozen teacher is scored
    assert done[0]["info"]["pseudo_label"] == 0 and done["auto"]["info"]["pseudo_label"] >= 0.6   # a level was chosen
    curves = [json.loads((p / "teacher_truth_curve.json").read_text()) for p in folders]
    assert curves[0] == curves[1] and all(0 <= c["coverage"] <= 1 for c in curves[0])  # one teacher, one curve
    assert any(k.startswith("pseudo_truth") and k.endswith("recall") for k in done["auto"]["metrics"])
    assert not any(k.startswith("pseudo_truth") for k in done[0]["metrics"])                            # the frozen teacher is scored
