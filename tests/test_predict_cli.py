"""`gold predict` across process boundaries: the scene-prediction contract, bad input, polygons, torchrun."""
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import calculate_default_transform, reproject

from gold.data import NormStats, sar_to_space
from gold.io import Grid, read_raster, write_geotiff
from gold.models import build_model
from gold.synth import SynthConfig, write_scene
from gold.train import save_checkpoint, student_checkpoint

from conftest import run_torchrun

CONTRACT = ["change_mask.tif", "change_polygons.geojson", "probability.tif", "summary.json"]
LABELLED = sorted(CONTRACT + ["errors.tif", "metrics.json"])


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """The scenes are tiny: one torch thread per process is faster, and immune to a busy machine."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 192 px synthetic scene and an untrained lightweight student checkpoint with the scene's statistics."""
    tmp = tmp_path_factory.mktemp("predict")
    paths = write_scene(tmp / "raw", "s", seed=3, cfg=SynthConfig(size=192))
    a = read_raster(paths["opt_t1"])[0].astype(np.float64)
    b = sar_to_space(read_raster(paths["sar_t2"])[0], "linear")
    stats = NormStats(a.mean((1, 2)).tolist(), a.std((1, 2)).tolist(), b.mean((1, 2)).tolist(),
                      b.std((1, 2)).tolist(), sar_units=["linear"])
    import torch
    from gold.infer import predict_scene
    torch.manual_seed(0)
    model = build_model("lightweight", 3, 1, teacher=False)
    ckpt = save_checkpoint(student_checkpoint(model, stats, {"threshold": 0.5}), tmp / "calibrate.pt")
    # an untrained student leans to one side; its threshold is set between two quantisation levels at the
    # median probability, so that about half the scene is "change" and the mask has structure
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predict_scene(ckpt, paths["opt_t1"], paths["sar_t2"], tmp / "calibrate", tile=64, overlap=32, device="cpu")
    finally:
        torch.set_num_threads(threads)
    level = int(np.median(read_raster(tmp / "calibrate" / "probability.tif")[0]))
    ckpt = save_checkpoint(student_checkpoint(model, stats, {"threshold": (level + 0.5) / 254}), tmp / "student.pt")
    return {**paths, "model": ckpt, "tmp": tmp, "level": level}


def _args(scene, out, *extra):
    return ("predict", "--model", scene["model"], "--opt-t1", scene["opt_t1"], "--sar-t2", scene["sar_t2"],
            "--out", out, "--tile", 64, "--overlap", 32, "--device", "cpu", *extra)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile, ds.overviews(1)


def _one_error_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gold predict: error:"), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_contract_on_the_optical_grid(scene, run_gold, tmp_path):
    out = tmp_path / "pred"
    proc = run_gold(*_args(scene, out, "--label", scene["label"]))
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert sorted(p.name for p in out.iterdir()) == LABELLED      # no temporaries left
    with rasterio.open(scene["opt_t1"]) as ref:
        grid = Grid.of(ref)
    for name in ("probability.tif", "change_mask.tif", "errors.tif"):
        data, prof, ovr = _read(out / name)
        assert (prof["crs"], prof["transform"], prof["width"], prof["height"]) == \
            (grid.crs, grid.transform, grid.width, grid.height), name
        assert prof["dtype"] == "uint8" and prof["nodata"] == 255 and prof["compress"] == "deflate" and ovr
    prob, mask = _read(out / "probability.tif")[0], _read(out / "change_mask.tif")[0]
    assert prob.max() <= 254 and set(np.unique(mask)) <= {0, 1}
    assert (mask == (prob > scene["level"])).all() and 0.3 < mask.mean() < 0.7
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labelled_pixels"] == 192 * 192 and 0 <= metrics["f1"] <= 1
    assert summary["changed_pixels"] == int(mask.sum()) and summary["scene"]["width"] == 192
    assert summary["changed_area"] == pytest.approx(mask.sum() * 4.0)
    assert summary["mpixel_per_s"] > 0 and summary["metrics"]["tp"] == metrics["tp"]
    assert json.loads((out / "summary.json").read_text())["outputs"] == [
        "probability.tif", "change_mask.tif", "change_polygons.geojson", "errors.tif", "metrics.json",
        "summary.json"]


def test_polygons_open_in_geopandas_and_cover_the_mask(scene, run_gold, tmp_path):
    gpd = pytest.importorskip("geopandas")
    run_gold(*_args(scene, tmp_path / "exact"))
    mask = _read(tmp_path / "exact" / "change_mask.tif")[0]
    exact = gpd.read_file(tmp_path / "exact" / "change_polygons.geojson")
    assert exact.crs.to_epsg() == 32633 and exact.is_valid.all() and len(exact) > 0
    pixel_area = 4.0
    assert exact.area.sum() == pytest.approx((mask == 1).sum() * pixel_area, rel=1e-9)
    assert np.allclose(exact["area"], exact.area) and (exact["mean_probability"] > scene["level"] / 254).all()

    tol = 3.0                                                        # map units (1.5 px)
    run_gold(*_args(scene, tmp_path / "simple", "--simplify", tol))
    simple = gpd.read_file(tmp_path / "simple" / "change_polygons.geojson")
    kept = exact.area >= 0                                           # simplification drops no part here
    bound = tol * exact.length[kept].sum()                           # |area change| <= tolerance x perimeter
    assert abs(simple.area.sum() - exact.area.sum()) <= bound
    assert simple.geometry.apply(lambda g: len(g.exterior.coords) if g.geom_type == "Polygon" else 0).sum() < \
        exact.geometry.apply(lambda g: len(g.exterior.coords) if g.geom_type == "Polygon" else 0).sum()

    run_gold(*_args(scene, tmp_path / "big", "--min-area", 100, "--epsg4326"))
    big = gpd.read_file(tmp_path / "big" / "change_polygons.geojson")
    assert big.crs.to_epsg() == 4326 and len(big) == int((exact.area >= 100).sum())
    assert (big["area"] >= 100).all()                                # area stays in the scene CRS (m^2)
    assert np.allclose(sorted(big["area"]), sorted(exact.area[exact.area >= 100]))
    lon, lat = big.total_bounds[:2]
    assert 14.9 < lon < 15.1 and 41.9 < lat < 42.1                   # UTM 33N (500 km E, 4650 km N): 15 E, 42 N


def test_sar_on_another_grid_is_aligned(scene, run_gold, tmp_path):
    """SAR at 3 m in ETRS89 / UTM 33N, shifted so that it covers part of the optical scene."""
    sar, prof = read_raster(scene["sar_t2"])
    src_tr = prof["transform"] * Affine.translation(48, 0)
    dst_crs = CRS.from_epsg(25833)
    left, top = src_tr.c, src_tr.f
    tr, w, h = calculate_default_transform(prof["crs"], dst_crs, 192, 192, left, top - 384.0, left + 384.0, top,
                                           resolution=3.0)
    out_sar = np.zeros((1, h, w), np.float32)
    reproject(sar, out_sar, src_transform=src_tr, src_crs=prof["crs"], dst_transform=tr, dst_crs=dst_crs,
              resampling=Resampling.bilinear, dst_nodata=np.nan)
    write_geotiff(tmp_path / "other_B.tif", out_sar, dst_crs, tr, nodata=float("nan"), tags={"units": "linear"})
    out = tmp_path / "pred"
    run_gold("predict", "--model", scene["model"], "--opt-t1", scene["opt_t1"], "--sar-t2", tmp_path / "other_B.tif",
             "--out", out, "--tile", 64, "--overlap", 32, "--device", "cpu", "--label", scene["label"])
    prob, p, _ = _read(out / "probability.tif")
    with rasterio.open(scene["opt_t1"]) as ref:
        assert (p["crs"], p["transform"], p["width"], p["height"]) == (ref.crs, ref.transform, 192, 192)
    assert (prob[:, :46] == 255).all()                               # west of the SAR footprint: nodata
    assert (prob[2:-2, 52:-2] != 255).all()                          # inside it: predicted
    errors = _read(out / "errors.tif")[0]
    assert ((errors == 255) == (prob == 255)).all()                  # unpredicted pixels are never scored
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["labelled_pixels"] == int((prob != 255).sum())


# ---- bad input: one line naming the file, nothing written

def test_sar_with_another_band_count_is_refused(scene, run_gold, tmp_path):
    sar, prof = read_raster(scene["sar_t2"])
    write_geotiff(tmp_path / "two_B.tif", np.concatenate([sar, sar]), prof["crs"], prof["transform"],
                  tags={"units": "linear"})
    proc = run_gold("predict", "--model", scene["model"], "--opt-t1", scene["opt_t1"], "--sar-t2",
                    tmp_path / "two_B.tif", "--out", tmp_path / "out", check=False)
    _one_error_line(proc, "two_B.tif", "SAR t2 has 2 bands, expected 1")
    assert not (tmp_path / "out").exists()


def test_rasters_that_do_not_overlap_are_refused(scene, run_gold, tmp_path):
    sar, prof = read_raster(scene["sar_t2"])
    write_geotiff(tmp_path / "far_B.tif", sar, prof["crs"], prof["transform"] * Affine.translation(5000, 0),
                  tags={"units": "linear"})
    proc = run_gold("predict", "--model", scene["model"], "--opt-t1", scene["opt_t1"], "--sar-t2",
                    tmp_path / "far_B.tif", "--out", tmp_path / "out", check=False)
    _one_error_line(proc, "far_B.tif", "does not overlap")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["model", "opt_t1", "sar_t2", "label"])
def test_missing_files_are_refused(scene, run_gold, tmp_path, missing):
    files = {k: scene[k] for k in ("model", "opt_t1", "sar_t2", "label")}
    files[missing] = tmp_path / f"missing_{missing}.tif"
    proc = run_gold("predict", "--model", files["model"], "--opt-t1", files["opt_t1"], "--sar-t2", files["sar_t2"],
                    "--label", files["label"], "--out", tmp_path / "out", check=False)
    _one_error_line(proc, f"missing_{missing}.tif", "not found")
    assert not (tmp_path / "out").exists()


def test_existing_outputs_need_overwrite(scene, run_gold, tmp_path):
    out = tmp_path / "pred"
    run_gold(*_args(scene, out, "--label", scene["label"]))
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    proc = run_gold(*_args(scene, out), check=False)
    _one_error_line(proc, str(out), "--overwrite")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before
    run_gold(*_args(scene, out, "--overwrite"))
    assert sorted(p.name for p in out.iterdir()) == CONTRACT         # the label's outputs of the earlier run go


# ---- no seams, through the command line (quantised probabilities)

def test_blended_windows_leave_no_seams(scene, run_gold, tmp_path):
    probs = {}
    for name, tile, overlap in (("one", 192, 0), ("blended", 128, 64), ("naive", 96, 0)):
        run_gold(*_args(scene, tmp_path / name)[:-6], "--tile", tile, "--overlap", overlap, "--device", "cpu")
        probs[name] = _read(tmp_path / name / "probability.tif")[0].astype(np.float64) / 254
    inner = (slice(32, -32), slice(32, -32))
    jumps = lambda p: np.abs(np.diff(p[32:-32], axis=1))             # jumps[:, c - 1] is between c - 1 and c
    seam = lambda p, c: jumps(p)[:, c - 1].mean() / jumps(p)[:, 31:-32].mean()
    d_blend = np.abs(probs["blended"] - probs["one"])[inner]
    d_naive = np.abs(probs["naive"] - probs["one"])[inner]
    assert d_blend.mean() < 0.02 and d_blend.max() < 0.15, (d_blend.mean(), d_blend.max())
    assert seam(probs["blended"], 128) < 1.5 and seam(probs["blended"], 64) < 1.5
    assert seam(probs["naive"], 96) > 5 and d_naive.max() > 0.3    # naive tiling shows its window border


# ---- torchrun: two ranks share the windows, rank 0 writes outputs equal to a single process's

def test_torchrun_two_ranks_equal_one_process(scene, run_gold, tmp_path):
    common = ["--label", scene["label"], "--batch", 1]   # one thread, one window per pass: same kernels both ways
    run_gold(*_args(scene, tmp_path / "single", *common))
    proc = run_torchrun(_args(scene, tmp_path / "ddp", *common), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"world_size": 2') == 1                 # only rank 0 printed the summary
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == LABELLED   # no per-rank leftovers
    for name in ("probability.tif", "change_mask.tif", "errors.tif"):
        a, pa, _ = _read(tmp_path / "single" / name)
        b, pb, _ = _read(tmp_path / "ddp" / name)
        assert np.array_equal(a, b), name
        assert (pa["transform"], pa["crs"]) == (pb["transform"], pb["crs"])
    feats = [json.loads((tmp_path / d / "change_polygons.geojson").read_text())["features"] for d in ("single", "ddp")]
    assert feats[0] == feats[1]
    assert json.loads((tmp_path / "single" / "metrics.json").read_text()) == \
        json.loads((tmp_path / "ddp" / "metrics.json").read_text())
