"""Headless-chromium helpers of the offline-page tests (tests/test_maps.py): screenshot, DOM, status report."""
from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from gold.core import GoldError, atomic_path

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    "Path of a Chromium-family browser, or None."
    env = os.environ.get("GOLD_BROWSER")
    if env:
        return env
    return next((p for p in map(shutil.which, _BROWSERS) if p), None)


def _browser(args: list[str], html_path: Path, size: tuple[int, int], budget_ms: int, timeout: float,
             offline: bool) -> subprocess.CompletedProcess:
    exe = find_browser()
    if exe is None:
        raise GoldError("no Chromium found (install `chromium`, or set GOLD_BROWSER)", path=html_path)
    with tempfile.TemporaryDirectory(prefix="gold-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
               "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
               f"--virtual-time-budget={budget_ms}"]
        if offline:  # any host name fails to resolve: the page must not need the network
            cmd.append("--host-resolver-rules=MAP * ~NOTFOUND")
        cmd += args + [Path(html_path).resolve().as_uri()]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def browser_screenshot(html_path: str | os.PathLike,  # the page
                       png_path: str | os.PathLike,  # the screenshot to write
                       size: tuple[int, int] = (1400, 800),  # window width, height in CSS pixels
                       budget_ms: int = 8000,  # virtual time the page's scripts get
                       timeout: float = 120,  # wall-clock limit in seconds
                       offline: bool = True,  # make every network name lookup fail
                       ) -> Path:
    "Render a page in headless Chromium to a PNG."
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        proc = _browser([f"--screenshot={tmp}"], Path(html_path), size, budget_ms, timeout, offline)
        if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
            raise GoldError(f"headless browser failed ({proc.returncode}): {proc.stderr.strip()[-300:]}",
                            path=html_path)
    return png_path


def browser_dom(html_path: str | os.PathLike,  # the page
                size: tuple[int, int] = (1400, 800),  # window width, height
                budget_ms: int = 8000,  # virtual time the page's scripts get
                timeout: float = 120,  # wall-clock limit in seconds
                offline: bool = True,  # make every network name lookup fail
                net_log: str | os.PathLike | None = None,  # write Chromium's network log (JSON) here
                ) -> str:
    "The page's DOM, serialised after its scripts ran in headless Chromium."
    extra = [f"--log-net-log={Path(net_log).resolve()}"] if net_log else []
    proc = _browser(extra + ["--dump-dom"], Path(html_path), size, budget_ms, timeout, offline)
    if proc.returncode != 0:
        raise GoldError(f"headless browser failed ({proc.returncode}): {proc.stderr.strip()[-300:]}", path=html_path)
    return proc.stdout

def page_status(dom: str,  # from `browser_dom`
                ) -> dict:
    "The JSON report a review page keeps in `<pre id=\"gold-status\">`."
    import re
    m = re.search(r'<pre id="gold-status"[^>]*>(.*?)</pre>', dom, re.S)
    return json.loads(html.unescape(m.group(1))) if m else {}
