"""The notebook review as a person uses it: the review tutorial run in JupyterLab in headless chromium, its tiles
and overlay checked on screen, and a polygon drawn through the page saved as a label."""
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from gold.io import read_raster
from gold.labels import toy_prediction_scene
from gold.mapview import LAYERS, colour_table
from lab import (browser_page, copy_notebook, find_chromium, hosts, jupyterlab, map_screenshot, run_all_cells,
                 run_cell, scene_box)
from test_maps import BLOCK, OPT, P, SAR, W, H, bbox, blend, load_rgb, near

TUTORIAL = Path(__file__).resolve().parents[1] / "nbs" / "tutorials" / "review.ipynb"
DRAWN = (70, 100, 20, 60)  # the rectangle the test draws: rows 70-99, columns 20-59 (on the t1 side)


def need_chromium() -> str:
    exe = find_chromium()
    if exe is None:
        import os
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed but CI is set (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    return exe


def to_screen(box, rect):
    """Screen (top, bottom, left, right) of a scene-pixel rectangle, given the scene's screen box."""
    y0, y1, x0, x1 = box
    sy, sx = (y1 - y0) / H, (x1 - x0) / W
    return y0 + rect[0] * sy, y0 + rect[1] * sy, x0 + rect[2] * sx, x0 + rect[3] * sx


def check_review(img: np.ndarray):
    """t1 left of the divider, t2 right of it, the probability exactly over the block, square pixels."""
    box = scene_box(img, [OPT, SAR])
    y0, y1, x0, x1 = box
    assert abs((x1 - x0) / (y1 - y0) - W / H) < 0.03, box                     # square pixels, whole scene
    opt, sar = near(img, OPT), near(img, SAR)
    split = int(np.nonzero(opt[y0 + 5, x0:x1])[0].max()) + x0                # the divider (its handle is mid-height)
    assert abs(split - (x0 + x1) / 2) < 8, (split, box)                         # in the middle of the map
    assert opt[y0 + 3:y1 - 3, x0 + 3:split - 3].mean() > 0.99                   # optical t1 on the left
    rgb = colour_table("probability")[P][:3]
    over = near(img, blend(rgb, LAYERS["probability"]["opacity"], SAR))
    t, b, l, r = to_screen(box, BLOCK)
    inside = over[int(t) + 3:int(b) - 3, int(l) + 3:int(r) - 3]
    assert inside.mean() > 0.97, f"overlay covers {inside.mean():.1%} of the block"
    sar_side = np.zeros_like(over); sar_side[y0:y1, split + 8:x1] = True
    rest = sar_side.copy(); rest[int(t) - 3:int(b) + 3, int(l) - 3:int(r) + 3] = False
    rest[(y0 + y1) // 2 - 24:(y0 + y1) // 2 + 24, split:split + 30] = False      # the divider's round handle
    assert sar[rest].mean() > 0.99 and over[rest].sum() == 0                    # SAR t2 elsewhere, no overlay
    got = bbox(over & sar_side)
    assert max(abs(g - w) for g, w in zip(got, (t, b, l, r))) <= 3, (got, (t, b, l, r))
    return box


def draw_rectangle(page, element, box, rect):
    """Draw a polygon with leaflet-draw's polygon tool by clicking the corners of a scene rectangle."""
    origin = element.bounding_box()
    t, b, l, r = to_screen(box, rect)
    corners = [(l, t), (r, t), (r, b), (l, b), (l, t)]          # back to the first corner closes the polygon
    element.locator(".leaflet-draw-draw-polygon").click()
    for x, y in corners:
        page.mouse.click(origin["x"] + x, origin["y"] + y)
        page.wait_for_timeout(250)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_review_and_annotate_in_jupyterlab(tmp_path):
    need_chromium()
    base, pred, mask = toy_prediction_scene(tmp_path / "data")
    copy_notebook(TUTORIAL, tmp_path / "review.ipynb")
    env = {"GOLD_REVIEW_SCENE": str(base), "GOLD_REVIEW_PRED": str(pred), "GOLD_REVIEW_OUT": str(tmp_path)}
    with jupyterlab(tmp_path, env) as (url, token):
        with browser_page(tmp_path / "profile") as (page, requested):
            run_all_cells(page, f"{url}/lab/tree/review.ipynb?token={token}", debug_png=tmp_path / "failed.png")
            maps = page.locator(".leaflet-container")
            assert maps.count() == 2
            box = check_review(load_rgb(map_screenshot(page, maps.nth(0), tmp_path / "review.png")))
            annotator = maps.nth(1)
            ann_box = scene_box(load_rgb(map_screenshot(page, annotator, tmp_path / "annotator.png")), [OPT, SAR])
            assert max(abs(a - b) for a, b in zip(ann_box, box)) <= 2                 # the same view
            draw_rectangle(page, annotator, ann_box, DRAWN)
            run_cell(page, "ann.save(")
            saved = page.locator(".jp-CodeCell", has_text="ann.save(").first.inner_text()
            assert "2 polygons" in saved, saved
    assert not port_open(urlsplit(url).port)                                       # the server is stopped
    tile_ports = {int(u.split("/localtileserver-proxy/")[1].split("/")[0]) for u in requested if "-proxy/" in u}
    assert tile_ports and not any(port_open(p) for p in tile_ports)                # and the kernel's tile server
    assert hosts(requested) == {urlsplit(url).netloc}, hosts(requested)            # nothing but JupyterLab itself
    assert sum("/api/tiles/" in u for u in requested) >= 8
    label = read_raster(tmp_path / "annotated_E.tif")[0][0]
    r0, r1, c0, c1 = DRAWN
    assert (label[r0 + 1:r1 - 1, c0 + 1:c1 - 1] == 255).all()                     # the drawn polygon
    assert (label[mask == 1] == 255).all()                                         # the model's, kept
    expect = np.zeros_like(label); expect[r0 - 1:r1 + 1, c0 - 1:c1 + 1] = 255; expect[mask == 1] = 255
    assert not (label[expect == 0]).any()                                          # nothing else
    feats = json.loads((tmp_path / "annotated_E.geojson").read_text())["features"]
    assert len(feats) == 2
