"""End-to-end fixtures: a workspace with the shapes dataset, and the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


def run_cli(*args: str, cwd: Path, timeout: int = 900) -> CliResult:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("COLUMNS", None)  # what the commands print never depends on the caller's terminal
    done = subprocess.run([sys.executable, "-m", "mmcli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr)


def _make_workspace(root: Path, size: int, seed: int) -> Path:
    shutil.copytree(REPO / "recipes", root / "recipes")
    result = run_cli("datasets", "make", "shapes", "data/shapes", "--size", str(size), "--seed", str(seed), cwd=root)
    assert result.code == 0, result.stderr
    return root


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """recipes/ and the full-size shapes dataset under data/shapes, as `make demo` makes them."""
    return _make_workspace(tmp_path_factory.mktemp("workspace"), 2000, 0)


@pytest.fixture(scope="session")
def small_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes dataset: fast runs for error handling and the commands."""
    return _make_workspace(tmp_path_factory.mktemp("small"), 120, 1)


@pytest.fixture(scope="session")
def small_run(small_workspace: Path) -> Path:
    """One short quickstart finetune on the small dataset, shared by the command tests."""
    result = run_cli("finetune", "recipes/quickstart.yaml", "name=small", "training.epochs=2",
                     "training.batch_size=16", "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    return small_workspace / "runs" / "small"
