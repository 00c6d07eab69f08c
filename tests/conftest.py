"""Shared fixtures of the integration tests."""
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL = SHARED / "data" / "real"


def gold_exe() -> str:
    """The `gold` console script of the environment running the tests."""
    exe = Path(sys.executable).parent / "gold"
    return str(exe) if exe.exists() else shutil.which("gold")


@pytest.fixture
def run_gold(tmp_path):
    """Run the `gold` command in a subprocess; returns the CompletedProcess."""
    import subprocess

    def run(*args, check=True, cwd=None):
        env = {**os.environ, "GOLD_PROGRESS": "0"}
        proc = subprocess.run([gold_exe(), *map(str, args)], capture_output=True, text=True,
                              cwd=cwd or tmp_path, env=env, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"gold {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
        return proc
    return run


@pytest.fixture
def real_data():
    """The shared real scenes; skips the test when ../shared is absent."""
    if not REAL.is_dir():
        pytest.skip("../shared/data/real is not present")
    return REAL
