"""Shared fixtures of the integration tests."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL = SHARED / "data" / "real"


def json_summary(stdout: str) -> dict:
    """The JSON summary a `gold` command prints last (after its log lines)."""
    import json
    return json.loads(stdout[stdout.index("{"):])


@pytest.fixture
def one_thread(monkeypatch):
    """Tiny scenes on a shared 2-core machine: one OpenMP thread per process."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def gold_exe() -> str:
    """The `gold` console script of the environment running the tests."""
    exe = Path(sys.executable).parent / "gold"
    return str(exe) if exe.exists() else shutil.which("gold")


def run_torchrun(args: list, cwd: Path, timeout: float = 300, dist_timeout: int = 120,
                 ) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m gold.cli ARGS` on one thread per rank.

    A collective that waits longer than `dist_timeout` seconds fails inside gold (GOLD_DIST_TIMEOUT); a run still
    going after `timeout` seconds gets SIGABRT, so that every process prints its Python stack (faulthandler), and
    the test fails with those stacks instead of a bare timeout.
    """
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "gold.cli",
           *map(str, args)]
    env = {**os.environ, "GOLD_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1",
           "GOLD_DIST_TIMEOUT": str(dist_timeout)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                            start_new_session=True)         # its own process group: the workers are killed with it
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"torchrun still running after {timeout} s; its stderr ends:\n{err[-8000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


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
