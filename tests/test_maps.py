"""Review maps in a real (headless) browser, labels from polygons through `gold preprocess`, and `gold map`."""
import json
import os
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from rasterio.transform import Affine
from rasterio.warp import transform_geom
from scipy import ndimage

import browser
from gold import maps
from gold.io import read_raster, write_geotiff
from gold.metrics import ERROR_LEGEND, error_map

H, W = 120, 160
BLOCK = (20, 50, 90, 140)  # predicted change: rows 20-49, columns 90-139
TRUTH = (20, 50, 100, 150)  # labelled change: 10 columns further east
OPT = np.array([0, 90, 200])  # optical t1, one flat colour
SAR = np.array([128, 128, 128])  # flat SAR, drawn mid grey
P = round(0.95 * 254)  # probability inside the block (uint8 contract value)
CHROMIUM_HOSTS = ("google.com", "googleapis.com", "gstatic.com", "gvt1.com", "chromium.org")


def need_browser() -> str:
    """Chromium, or a skip outside CI (in CI a missing browser is a failure)."""
    exe = browser.find_browser()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed but CI is set (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    return exe


def write_scene(root: Path, crs="EPSG:32633", name="toy"):
    """A flat-colour scene with a label and a hand-written `gold predict` folder (the contract's files)."""
    root.mkdir(parents=True, exist_ok=True)
    tr = Affine(2.0, 0, 500000, 0, -2.0, 4650000) if crs else Affine.identity()
    a = np.zeros((3, H, W), np.uint8)
    a[:] = OPT[:, None, None]
    write_geotiff(root / f"{name}_A.tif", a, crs, tr)
    write_geotiff(root / f"{name}_B.tif", np.full((1, H, W), 0.05, np.float32), crs, tr, tags={"units": "linear"})
    r0, r1, c0, c1 = BLOCK
    mask = np.zeros((H, W), np.uint8)
    mask[r0:r1, c0:c1] = 1
    r0, r1, c0, c1 = TRUTH
    truth = np.zeros((H, W), np.uint8)
    truth[r0:r1, c0:c1] = 1
    write_geotiff(root / f"{name}_E.tif", truth * 255, crs, tr)
    pred = root / "pred"
    prob = np.where(mask == 1, P, 0).astype(np.uint8)
    write_geotiff(pred / "probability.tif", prob, crs, tr, nodata=255)
    write_geotiff(pred / "change_mask.tif", mask, crs, tr, nodata=255)
    write_geotiff(pred / "errors.tif", error_map(mask, truth), crs, tr)
    maps.write_geojson(maps.polygons_from_mask(mask, tr, crs, prob), pred / "change_polygons.geojson")
    (pred / "summary.json").write_text(json.dumps({"changed_fraction": float(mask.mean())}))
    return root / name, pred


def load_rgb(png: Path) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def near(img: np.ndarray, colour, tol: int = 14) -> np.ndarray:
    return np.abs(img - np.asarray(colour)).max(-1) <= tol


def bbox(mask: np.ndarray):
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def blend(top, alpha, under):
    return np.round(alpha * np.asarray(top, float) + (1 - alpha) * np.asarray(under, float))


def screen_rect(footprint: np.ndarray, rect, margin: float = 0.0):
    """Screen rows/cols of a scene-pixel rectangle, from the scene's footprint found in the screenshot."""
    y0, y1, x0, x1 = bbox(footprint)
    sy, sx = (y1 - y0) / H, (x1 - x0) / W
    r0, r1, c0, c1 = rect
    return (int(round(y0 + r0 * sy + margin)), int(round(y0 + r1 * sy - margin)),
            int(round(x0 + c0 * sx + margin)), int(round(x0 + c1 * sx - margin)))


def panes(img: np.ndarray) -> tuple[slice, slice]:
    """Column ranges of the two map panes, split at the dark divider, ending at the side panel."""
    divider = near(img[100:-100], (38, 50, 56), tol=4).mean(0) > 0.9
    cols = np.nonzero(divider)[0]
    assert len(cols) and cols.max() - cols.min() < 6, "pane divider not found"
    width = cols.min()   # the panes are equally wide
    return slice(0, width), slice(cols.max() + 1, min(img.shape[1], cols.max() + 1 + width))


def check_overlay(img: np.ndarray, pane_cols: slice, base, overlay, rect=BLOCK):
    """The overlay colour fills the rectangle's screen position and is absent from the rest of the scene."""
    pane = img[:, pane_cols]
    is_base, is_over = near(pane, base), near(pane, overlay)
    labels, n = ndimage.label(is_base | is_over)
    assert n, "scene not drawn"
    largest = labels == 1 + np.argmax(ndimage.sum(np.ones_like(labels), labels, range(1, n + 1)))
    footprint = ndimage.binary_fill_holes(largest)   # the scene, with what is drawn over it
    assert footprint.sum() > 20_000, "scene not drawn"
    is_over &= footprint   # title bar, tags and controls lie outside the scene
    inner = screen_rect(footprint, rect, margin=3)
    outer = screen_rect(footprint, rect, margin=-3)
    inside = is_over[inner[0]:inner[1], inner[2]:inner[3]]
    assert inside.mean() > 0.97, f"overlay covers {inside.mean():.1%} of the block"
    away = footprint.copy()
    away[outer[0]:outer[1], outer[2]:outer[3]] = False
    assert is_over[away].sum() == 0, f"{is_over[away].sum()} overlay pixels outside the block"
    got = bbox(is_over)
    want = screen_rect(footprint, rect)
    assert max(abs(g - w) for g, w in zip(got, want)) <= 3, (got, want)
    return footprint


@pytest.mark.parametrize("crs", ["EPSG:32633", None], ids=["utm", "pixel-grid"])
def test_overlay_drawn_where_the_mask_says(tmp_path, crs):
    need_browser()
    base, pred = write_scene(tmp_path / "raw", crs)
    page = maps.scene_map(base, pred, tmp_path / "map.html")
    img = load_rgb(browser.browser_screenshot(page, tmp_path / "shot.png", size=(1400, 800)))
    colour = np.array(matplotlib.colormaps[maps.PROB_CMAP](P / 254)[:3]) * 255
    opacity = next(o["opacity"] for o in maps.scene_view(base, pred).overlays if o["id"] == "probability")
    left_cols, right_cols = panes(img)
    left = check_overlay(img, left_cols, OPT, blend(colour, opacity, OPT))
    right = check_overlay(img, right_cols, SAR, blend(colour, opacity, SAR))
    assert abs(bbox(left)[1] - bbox(left)[0] - (bbox(right)[1] - bbox(right)[0])) <= 1   # linked: same zoom
    ly0, ly1, lx0, lx1 = bbox(left)
    assert abs((lx1 - lx0) / (ly1 - ly0) - W / H) < 0.03                                  # square pixels


def test_error_overlay_in_kit_colours(tmp_path):
    need_browser()
    base, pred = write_scene(tmp_path / "raw")
    page = maps.scene_map(base, pred, tmp_path / "map.html", show=["errors"])
    img = load_rgb(browser.browser_screenshot(page, tmp_path / "shot.png", size=(1400, 800)))
    a = next(o["opacity"] for o in maps.scene_view(base, pred).overlays if o["id"] == "errors")
    left = panes(img)[0]
    colours = {k: blend(c, a, OPT) for k, (_, c) in ERROR_LEGEND.items()}
    r0, r1 = BLOCK[:2]
    check_overlay(img, left, OPT, colours["false positive"], rect=(r0, r1, 90, 100))
    check_overlay(img, left, OPT, colours["true positive"], rect=(r0, r1, 100, 140))
    check_overlay(img, left, OPT, colours["false negative"], rect=(r0, r1, 140, 150))


def _net_hosts(net_log: Path) -> set:
    text = net_log.read_text(errors="replace")
    return {u.split("/")[2] for u in re.findall(r'"url":"(https?://[^"]+)"', text)}


def test_page_fetches_nothing_and_renders_offline(tmp_path):
    need_browser()
    base, pred = write_scene(tmp_path / "raw")
    page = maps.scene_map(base, pred, tmp_path / "map.html")
    status = browser.page_status(browser.browser_dom(page, net_log=tmp_path / "net.json"))
    assert status["maps"] == {"left": "idle", "right": "idle"} and status["errors"] == [], status
    assert status["resources"] == [], status["resources"]          # no script, style, image or tile requested
    page_hosts = {h for h in _net_hosts(tmp_path / "net.json") if not h.endswith(CHROMIUM_HOSTS)}
    assert page_hosts == set(), page_hosts
    # control: with the basemap switched on the same checks do see the tile requests
    on = maps.scene_map(base, pred, tmp_path / "basemap.html", basemap=True)
    status = browser.page_status(browser.browser_dom(on, net_log=tmp_path / "net_on.json"))
    assert "tile.openstreetmap.org" in _net_hosts(tmp_path / "net_on.json")
    assert any("tile.openstreetmap.org" in e for e in status["errors"])


@pytest.mark.parametrize("vectoriser", ["gold.maps", "gold.infer"])
def test_labels_round_trip_through_preprocess(tmp_path, run_gold, vectoriser):
    """Mask -> polygons in lon/lat (as a browser or `gold predict --epsg4326` gives them) -> save_labels
    -> gold preprocess -> label tiles equal to the mask (up to one pixel along polygon edges)."""
    from gold.synth import SynthConfig, write_scenes
    raw = tmp_path / "raw"
    files = write_scenes(raw, 1, seed=3, cfg=SynthConfig(size=128))[0]
    lab, prof = read_raster(files["label"])
    mask = (lab[0] > 0).astype(np.uint8)   # an irregular "prediction": the synthetic change itself
    assert 0.01 < mask.mean() < 0.6
    if vectoriser == "gold.maps":
        fc = maps.polygons_from_mask(mask, prof["transform"], prof["crs"])
        polygons = {"type": "FeatureCollection", "features": [
            dict(f, geometry=transform_geom(prof["crs"], "EPSG:4326", f["geometry"])) for f in fc["features"]]}
    else:
        from gold.infer import vectorise
        write_geotiff(tmp_path / "m.tif", mask, prof["crs"], prof["transform"], nodata=255)
        write_geotiff(tmp_path / "p.tif", mask * 254, prof["crs"], prof["transform"], nodata=255)
        vectorise(tmp_path / "m.tif", tmp_path / "p.tif", tmp_path / "poly.geojson", epsg4326=True)
        polygons = tmp_path / "poly.geojson"
    files["label"].unlink()
    res = maps.save_labels(polygons, files["opt_t1"], raw / "synth_E.tif")
    assert res.polygons > 0 and res.warnings == []
    run_gold("preprocess", "--raw", raw, "--out", tmp_path / "tiles", "--tile", "64", "--stride", "64",
             "--val", "0", "--test", "0", "--gap", "0")
    manifest = pd.read_csv(tmp_path / "tiles" / "manifest.csv", keep_default_na=False)
    kept = manifest[manifest.kept.astype(str) == "True"]
    assert len(kept) == 4
    edge = ndimage.binary_dilation(mask) ^ ndimage.binary_erosion(mask)   # one pixel either side of every edge
    mismatched = 0
    for row in kept.itertuples():
        tile = read_raster(tmp_path / "tiles" / row.split / "label" / f"{row.tile}.tif")[0][0]
        window = np.s_[row.row_off:row.row_off + 64, row.col_off:row.col_off + 64]
        scored = tile != 255
        wrong = scored & (tile != mask[window])
        assert not (wrong & ~edge[window]).any(), f"{row.tile}: label differs away from polygon edges"
        mismatched += int(wrong.sum())
        assert scored.mean() > 0.9
    assert mismatched <= 0.01 * mask.size, mismatched


def test_gold_map_command(tmp_path, run_gold):
    base, pred = write_scene(tmp_path / "raw")
    out = tmp_path / "map.html"
    run_gold("map", "--scene", tmp_path / "raw", "--pred", pred, "--out", out)
    text = out.read_text()
    assert "maplibregl.Map" in text and '"id":"errors"' in text
    again = run_gold("map", "--scene", tmp_path / "raw", "--pred", pred, "--out", out, check=False)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "exists; pass --overwrite" in lines[0], again.stderr
    run_gold("map", "--scene", f"{base}_A.tif", f"{base}_B.tif", "--pred", pred, "--out", out, "--overwrite",
             "--show", "errors", "--max-size", "64")
    assert '"id":"errors","name":"errors vs label","kind":"raster","opacity":0.85,"visible":true' in out.read_text()
    bad = run_gold("map", "--scene", tmp_path / "raw", "--pred", tmp_path, "--out", tmp_path / "x.html", check=False)
    assert bad.returncode == 2 and "not a `gold predict` folder" in bad.stderr
