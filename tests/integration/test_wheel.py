"""The package as users get it: a wheel, built from the checkout and installed into a fresh virtual
environment outside the repository, lists its built-in recipes and datasets and runs the quickstart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return done


def test_a_wheel_in_a_fresh_environment_has_its_recipes_and_runs(tmp_path):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO), cwd=tmp_path)
    wheel = next(dist.glob("mmcli-*.whl"))
    fresh = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", str(fresh), cwd=tmp_path)
    # the dependencies (torch and the rest, gigabytes) come from this environment's site-packages, as a
    # plain path: its .pth files are not read, so the checkout's editable install stays out
    site = Path(run(str(fresh / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(str(fresh / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel), cwd=tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work = tmp_path / "work"
    work.mkdir()
    mmcli = str(fresh / "bin" / "mmcli")
    where = run(str(fresh / "bin" / "python"), "-c", "import mmcli; print(mmcli.__file__)", cwd=work, env=env).stdout
    assert str(fresh) in where, f"not the installed package: {where}"
    recipes = json.loads(run(mmcli, "recipes", "ls", "--json", cwd=work, env=env).stdout)["recipes"]
    assert {"quickstart", "contrastive", "pretrain-then-finetune"} <= {r["name"] for r in recipes}
    assert all(str(fresh) in r["path"] for r in recipes)
    datasets = run(mmcli, "datasets", "ls", cwd=work, env=env).stdout
    assert "shapes" in datasets
    run(mmcli, "datasets", "make", "shapes", "data/shapes", "--size", "120", "--seed", "1", cwd=work, env=env)
    result = json.loads(run(mmcli, "run", "quickstart", "training.epochs=1", "training.batch_size=16", "--json",
                            cwd=work, env=env).stdout)
    assert result["ok"] and "scene" in result["metrics"]["test"]
    assert (work / "runs" / "quickstart" / "checkpoints" / "best" / "model.safetensors").is_file()
