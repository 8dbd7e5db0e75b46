"""What mmcli will never do to your files (README), scenario by scenario through the real CLI: a failed
re-run keeps the trained model, names stay inside output_dir, generators do not overwrite other files,
the lock has one holder, signals end a training cleanly, environment faults are one line."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_cli

FAST = ["training.epochs=1", "training.batch_size=16"]


def one_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished(small_workspace) -> Path:
    result = run_cli("finetune", "recipes/quickstart.yaml", *FAST, "name=keep", "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    return small_workspace / "runs" / "keep"


@pytest.mark.slow
def test_a_failed_rerun_keeps_the_trained_model_and_overwrite_replaces_only_once_done(small_workspace, finished):
    before = snapshot(finished)
    refused = run_cli("finetune", "recipes/quickstart.yaml", *FAST, "name=keep", cwd=small_workspace)
    assert refused.code == 2 and "holds a finished run" in one_line(refused) and "--overwrite" in refused.stderr
    misspelled = run_cli("finetune", "recipes/quickstart.yaml", *FAST, "name=keep", "data.manifest=data/shapes/typo.csv",
                         "--overwrite", cwd=small_workspace)
    assert misspelled.code == 2 and "manifest not found" in one_line(misspelled)
    assert snapshot(finished) == before, "the previous run changed"
    assert run_cli("evaluate", str(finished), "--json", cwd=small_workspace).code == 0
    replaced = run_cli("finetune", "recipes/quickstart.yaml", "training.epochs=2", "training.batch_size=16", "name=keep",
                       "--overwrite", "--json", cwd=small_workspace)
    assert replaced.code == 0, replaced.stderr[-2000:]
    assert replaced.json()["metrics"]["training"]["epochs"] == 2
    assert not list((small_workspace / "runs").glob(".keep.*[!k]")), "a staging folder was left"  # only .keep.lock


@pytest.mark.slow
def test_a_name_never_leaves_output_dir(small_workspace):
    before = sorted(p.name for p in small_workspace.iterdir())
    result = run_cli("finetune", "recipes/quickstart.yaml", "name=..", cwd=small_workspace)
    assert result.code == 2 and "name" in one_line(result)
    result = run_cli("finetune", "recipes/quickstart.yaml", "name=../escape", cwd=small_workspace)
    assert result.code == 2 and "name" in one_line(result)
    assert sorted(p.name for p in small_workspace.iterdir()) == before


def test_datasets_make_refuses_a_folder_of_other_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "manifest.csv").write_text("my,own\n1,2\n")
    result = run_cli("datasets", "make", "shapes", str(folder), "--size", "12", cwd=tmp_path)
    assert result.code == 2 and "not empty" in one_line(result) and "--force" in result.stderr
    assert (folder / "manifest.csv").read_text() == "my,own\n1,2\n"
    assert run_cli("datasets", "make", "shapes", str(tmp_path / "fresh"), "--size", "12", cwd=tmp_path).code == 0
    again = run_cli("datasets", "make", "shapes", str(tmp_path / "fresh"), "--size", "12", cwd=tmp_path)
    assert again.code == 0, again.stderr  # its own previous output: made again, byte for byte
    assert run_cli("datasets", "make", "shapes", str(folder), "--size", "12", "--force", cwd=tmp_path).code == 0


def _contend(run_dir: str, release, outcomes) -> None:
    """Try the run's lock once and report; a process that gets it keeps it until ``release`` is set."""
    from mmcli.errors import MmcliError
    from mmcli.run_lock import run_lock

    try:
        with run_lock(Path(run_dir), "contender"):
            outcomes.put(("held", os.getpid()))
            release.wait(120)
    except MmcliError as error:
        outcomes.put(("refused", str(error)))


def _contenders(context, count: int, run_dir: Path, release, outcomes) -> tuple[list, list]:
    """``count`` processes trying the lock at once; their outcomes, once every one has reported."""
    processes = [context.Process(target=_contend, args=(str(run_dir), release, outcomes)) for _ in range(count)]
    for process in processes:
        process.start()
    return processes, [outcomes.get(timeout=120) for _ in processes]


def test_the_lock_never_has_two_holders(tmp_path):
    """No timing involved: the test holds the lock while others try it, then lets contenders race for it,
    each keeping it, once it has it, until every contender has reported."""
    from mmcli.run_lock import run_lock

    context = multiprocessing.get_context("fork")
    run_dir = tmp_path / "run"
    outcomes = context.Queue()
    with run_lock(run_dir, "test-holder"):  # held here: every other process is refused and told by whom
        release = context.Event()
        processes, results = _contenders(context, 4, run_dir, release, outcomes)
        release.set()
        for process in processes:
            process.join(120)
    assert [kind for kind, _ in results] == ["refused"] * 4, results
    assert all(f"in use by process {os.getpid()} (test-holder)" in message for _, message in results), results
    release = context.Event()
    processes, results = _contenders(context, 8, run_dir, release, outcomes)  # released: they race for it
    release.set()
    for process in processes:
        process.join(120)
    holders = [pid for kind, pid in results if kind == "held"]
    assert len(holders) == 1, f"{len(holders)} holders at once: {results}"
    with run_lock(run_dir, "test"):  # its holder gone, the lock is free again
        pass


@pytest.mark.slow
def test_readers_are_refused_while_the_run_is_being_trained(small_workspace, finished):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time, pathlib\nfrom mmcli.run_lock import run_lock\n"
        f"with run_lock(pathlib.Path({str(finished)!r}), 'finetune'):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["evaluate", str(finished)], ["predict", str(finished), "--manifest", "data/shapes/manifest.csv"],
                        ["encode", str(finished)]):
            result = run_cli(*command, cwd=small_workspace)
            assert result.code == 2 and f"in use by process {holder.pid} (finetune)" in one_line(result), command
    finally:
        holder.kill()
        holder.wait()
    assert run_cli("evaluate", str(finished), "--json", cwd=small_workspace).code == 0  # released with its holder


@pytest.mark.slow
def test_sigterm_checkpoints_releases_and_reports_then_resume_finishes(small_workspace):
    args = [sys.executable, "-m", "mmcli", "finetune", "recipes/quickstart.yaml", "training.epochs=3",
            "training.batch_size=8", "name=termed", "--json"]
    process = subprocess.Popen(args, cwd=small_workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    checkpoints = small_workspace / "runs" / "termed" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("step-*")):  # the first epoch is done: training is under way
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    payload = json.loads(stdout.strip().splitlines()[-1])
    assert payload["ok"] is False and payload["exit_code"] == 143
    assert payload["interrupted"]["signal"] == "SIGTERM" and payload["interrupted"]["checkpoint"].endswith(
        f"step-{payload['interrupted']['step']}")
    resumed = run_cli("finetune", "recipes/quickstart.yaml", "training.epochs=3", "training.batch_size=8", "name=termed",
                      "--resume", "--json", cwd=small_workspace)  # the lock was released
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert resumed.json()["metrics"]["training"]["resumed_from"].endswith(f"step-{payload['interrupted']['step']}")


@pytest.mark.slow
def test_environment_faults_are_one_line_with_exit_1(small_workspace, tmp_path):
    result = run_cli("finetune", "recipes/quickstart.yaml", "output_dir=/sys/mmcli-runs", cwd=small_workspace)
    assert result.code == 1
    line = one_line(result)
    assert "/sys/mmcli-runs" in line and "internal error" not in line
    result = run_cli("preprocess", "recipes/quickstart.yaml", "data.cache_dir=/sys/mmcli-cache", cwd=small_workspace)
    assert result.code == 1 and "/sys/mmcli-cache" in one_line(result)


def test_an_environment_fault_inside_a_command_names_the_path(monkeypatch):
    import errno

    from typer.testing import CliRunner

    from mmcli.cli.app import app

    for number, words in ((errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"), (errno.EACCES, "not writable")):
        def failing(*args, number=number, **kwargs):
            raise OSError(number, os.strerror(number), "/data/runs/x/metrics.json")

        monkeypatch.setattr("mmcli.recipe.loader.load_recipe", failing)
        result = CliRunner().invoke(app, ["recipes", "validate", "whatever.yaml"])
        assert result.exit_code == 1
        assert "cannot write /data/runs/x/metrics.json" in result.output and words in result.output


@pytest.mark.slow
def test_a_run_whose_recipe_is_no_longer_yaml_is_one_line(small_workspace, finished, tmp_path):
    import shutil

    broken = small_workspace / "runs" / "broken-yaml"
    shutil.copytree(finished, broken)
    (broken / "recipe.yaml").write_text("name: [unclosed\n")
    result = run_cli("evaluate", str(broken), cwd=small_workspace)
    assert result.code == 2 and "recipe.yaml: not valid YAML" in one_line(result)


@pytest.mark.slow
def test_a_run_evaluates_from_another_folder_and_warnings_are_said(small_workspace, finished, tmp_path):
    data = json.loads((finished / "data.json").read_text())
    assert Path(data["cache"]).is_absolute()
    elsewhere = run_cli("evaluate", str(finished.resolve()), "--json", cwd=tmp_path)
    assert elsewhere.code == 0, elsewhere.stderr[-2000:]
    result = run_cli("finetune", "recipes/quickstart.yaml", *FAST, "name=no-validation", "data.validation_split=nope",
                     "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    assert any("no rows" in warning for warning in result.json()["warnings"])
    assert "warning: data.validation_split" in result.stderr


def test_a_sweep_validates_every_variant_before_training(small_workspace):
    result = run_cli("run", "recipes/quickstart.yaml", "--sweep", "model.fusion.type=concat,gatd", cwd=small_workspace)
    assert result.code == 2 and "gatd" in one_line(result)
    assert not list((small_workspace / "runs").glob("quickstart-sweep-*"))


def test_usage_errors_under_json_are_one_json_object(small_workspace):
    result = run_cli("finetune", "--bogus-option", "--json", cwd=small_workspace)
    assert result.code == 2
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and "bogus-option" in payload["error"]
