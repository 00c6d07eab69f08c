"""Helpers of the JupyterLab browser test: a JupyterLab server of the test's own, Debian's chromium through Playwright."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
                  "--hide-scrollbars"]


def find_chromium() -> str | None:
    """Debian's chromium (or $GOLD_BROWSER); Playwright only drives it, it downloads no browser."""
    return os.environ.get("GOLD_BROWSER") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root: Path, env: dict | None = None, timeout: float = 90):
    """A JupyterLab server on 127.0.0.1 with a random token, serving `root`; stopped on exit. Yields (url, token)."""
    port, token = free_port(), secrets.token_hex(16)
    home = root / ".lab-home"   # settings, workspaces and runtime files of this server only
    env = {**os.environ, **(env or {}), "GOLD_PROGRESS": "0",
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           "--port-retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(root / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start:\n{(root / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def browser_page(profile: Path, size=(1400, 1000)):
    """A headless chromium page (fresh profile) and the list of every URL it requests."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=find_chromium(), headless=True,
                                                   args=CHROMIUM_FLAGS, viewport={"width": size[0], "height": size[1]})
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            yield page, requests
        finally:
            ctx.close()


def hosts(urls: list[str]) -> set:
    """The host:port of every http(s) or ws(s) request."""
    return {urlsplit(u).netloc for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")}


def copy_notebook(src: Path, dst: Path) -> Path:
    """A copy of a notebook (JupyterLab autosaves: never open the repository's file) that names the python3 kernel."""
    import json
    nb = json.loads(Path(src).read_text())
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    dst.write_text(json.dumps(nb))
    return dst


def run_all_cells(page, notebook_url: str, timeout_ms: int = 180_000, debug_png: Path | None = None) -> None:
    """Open a notebook in JupyterLab, wait for its kernel, run all cells from the Run menu, wait until each has run;
    fail on a traceback in any output (and save a screenshot of the page to `debug_png` on any failure)."""
    try:
        page.goto(notebook_url)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_ms)
        page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=timeout_ms)   # kernel up
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_function(
            """() => { const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');  // this tab only
                       return [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                                .every(p => /\\[\\d+\\]/.test(p.textContent))
                              || [...nb.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                                .some(o => o.textContent.includes('Traceback')); }""", timeout=timeout_ms)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
        assert not tracebacks, tracebacks
    except Exception:
        if debug_png is not None:
            page.screenshot(path=str(debug_png), full_page=True)
        raise


def run_cell(page, text: str, timeout_ms: int = 60_000) -> None:
    """Run the code cell whose source contains `text` (Shift+Enter) and wait for its new execution count."""
    cell = page.locator(".jp-CodeCell", has_text=text).first
    before = cell.locator(".jp-InputPrompt").inner_text()
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        """([t, before]) => { const c = [...document.querySelectorAll('.jp-CodeCell')].find(c => c.textContent.includes(t));
                              const p = c.querySelector('.jp-InputPrompt').textContent;
                              return p !== before && /\\[\\d+\\]/.test(p); }""", arg=[text, before], timeout=timeout_ms)


def map_screenshot(page, element, path: Path, settle_ms: int = 1500) -> Path:
    """Screenshot of one map once every tile in it has loaded."""
    element.scroll_into_view_if_needed()
    page.wait_for_timeout(settle_ms)
    element.evaluate("""async (m) => { for (let i = 0; i < 100; i++) {
        const tiles = [...m.querySelectorAll('img.leaflet-tile')];
        if (tiles.length && tiles.every(t => t.classList.contains('leaflet-tile-loaded'))) return;
        await new Promise(r => setTimeout(r, 200)); } }""")
    page.wait_for_timeout(300)
    element.screenshot(path=str(path))
    return path


def scene_box(img, colours, tol: int = 14) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) screen box of a flat-colour scene: the union of each colour's largest blob."""
    import numpy as np
    from scipy import ndimage
    boxes = []
    for c in colours:
        labels, n = ndimage.label(np.abs(img - np.asarray(c)).max(-1) <= tol)
        assert n, f"colour {c} not on screen"
        rows, cols = np.nonzero(labels == 1 + np.argmax(ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))))
        boxes.append((rows.min(), rows.max() + 1, cols.min(), cols.max() + 1))
    return (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes))
