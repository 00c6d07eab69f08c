"""The README's JupyterLab screenshot: the review tutorial run on a scene and its `gold predict` folder.

    .venv/bin/python tests/review_shot.py --scene data/demo/unseen/unseen --pred data/demo/predict \\
        --out reports/figures/review_lab.png          (what `make review-shot` runs, after `make demo`)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import browser_page, copy_notebook, hosts, jupyterlab, map_screenshot, run_all_cells  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, required=True, help="the scene's base path (raw/city for raw/city_A.tif)")
    ap.add_argument("--pred", type=Path, required=True, help="its `gold predict` folder")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = ap.parse_args()
    if not Path(f"{args.scene}_A.tif").is_file() or not (args.pred / "probability.tif").is_file():
        sys.exit(f"review_shot: {args.scene}_A.tif or {args.pred}/probability.tif not found (run `make demo` first)")
    with tempfile.TemporaryDirectory(prefix="gold-review-shot-") as d:
        root = Path(d)
        copy_notebook(ROOT / "nbs" / "tutorials" / "review.ipynb", root / "review.ipynb")
        env = {"GOLD_REVIEW_SCENE": str(args.scene.resolve()), "GOLD_REVIEW_PRED": str(args.pred.resolve()),
               "GOLD_REVIEW_OUT": str(root)}
        with jupyterlab(root, env) as (url, token), browser_page(root / "profile", size=(1280, 900)) as (page, req):
            run_all_cells(page, f"{url}/lab/tree/review.ipynb?token={token}")
            cell = page.locator(".jp-CodeCell", has_text="review_map(SCENE").first
            map_screenshot(page, page.locator(".leaflet-container").first, root / "map.png")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            cell.screenshot(path=str(args.out))
            assert hosts(req) == {url.split("//")[1]}, hosts(req)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
