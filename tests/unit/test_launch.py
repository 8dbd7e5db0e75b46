"""--num-processes: the command line torchrun gets, the exit code the main process hands its launcher, and
errors before any process starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmcli.errors import MmcliError
from mmcli.workflows import launch
from mmcli.workflows.launch import Launch, child_arguments, record_exit, torchrun_arguments

REPO = Path(__file__).resolve().parents[2]


def test_the_launcher_flags_are_left_out_of_the_processes_command_line():
    argv = ["finetune", "recipes/quickstart.yaml", "training.epochs=2", "--num-processes", "2", "--nnodes=2",
            "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port=29501", "--json", "--resume"]
    assert child_arguments(argv) == ["finetune", "recipes/quickstart.yaml", "training.epochs=2", "--json", "--resume"]


def test_one_machine_gets_a_standalone_rendezvous_several_a_static_one():
    assert torchrun_arguments(Launch(processes=4)) == ["--standalone", "--nproc_per_node", "4"]
    assert torchrun_arguments(Launch(2, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29501)) == [
        "--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "2", "--master_addr", "10.0.0.1", "--master_port", "29501"]
    with pytest.raises(MmcliError, match="--master-addr"):
        torchrun_arguments(Launch(2, nnodes=2))
    with pytest.raises(MmcliError, match="--node-rank: 2 is not between 0 and 1"):
        torchrun_arguments(Launch(2, nnodes=2, node_rank=2, master_addr="10.0.0.1"))
    assert not Launch().wanted and Launch(processes=2).wanted and Launch(nnodes=2).wanted


def test_the_main_process_records_its_exit_code_for_the_launcher(tmp_path, monkeypatch):
    report = tmp_path / "code"
    monkeypatch.setenv(launch.REPORT_ENV, str(report))
    monkeypatch.setenv("RANK", "1")
    record_exit(2)
    assert not report.exists()  # only the main process reports
    monkeypatch.setenv("RANK", "0")
    record_exit(143)
    assert report.read_text() == "143"


def test_a_bad_recipe_is_one_line_before_any_process_starts(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text((REPO / "recipes" / "quickstart.yaml").read_text().replace("epochs: 20", "epochs: -1"))
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, "-m", "mmcli", "finetune", str(recipe), "--num-processes", "2", "--json"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    payload = json.loads(done.stdout)
    assert payload["ok"] is False and "training.epochs" in payload["error"]
    assert done.stderr.strip().count("\n") == 0 and "torch.distributed" not in done.stderr  # one line, no torchrun
