"""``--num-processes N`` (and ``--nnodes/--node-rank/--master-addr/--master-port``): the training
commands run themselves again under torchrun (``python -m torch.distributed.run ... -m mmcli ARGS``,
the same arguments less these flags), one process per device or per share of the CPU cores; torch and
accelerate pick gloo on CPUs and NCCL on GPUs. The main process prints the result as usual (one JSON
object with --json) and records its exit code for this parent, which exits with it.

Signals: the parent forwards SIGTERM and SIGINT to torchrun, which forwards them to the processes;
they stop together after the same step with one checkpoint (``--resume`` continues). torchrun runs in
its own session, so a Ctrl-C reaches it once, and it is stopped (SIGTERM) if the parent dies (Linux)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mmcli.errors import MmcliError

REPORT_ENV = "MMCLI_LAUNCH_REPORT"  # where the main process records its exit code for the launcher
VALUED_FLAGS = ("--num-processes", "--nnodes", "--node-rank", "--master-addr", "--master-port")


@dataclass(frozen=True)
class Launch:
    """Processes per machine, machines, this machine's rank, and the rendezvous of rank 0's machine."""

    processes: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def wanted(self) -> bool:
        return self.processes > 1 or self.nnodes > 1


def launched() -> bool:
    """Whether this process already runs under a launcher (torchrun, accelerate launch)."""
    return "RANK" in os.environ or "LOCAL_RANK" in os.environ


def child_arguments(arguments: list[str]) -> list[str]:
    """The command line less the launcher's flags (``--flag value`` and ``--flag=value``)."""
    out: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in VALUED_FLAGS:
            skip = True
        elif not argument.startswith(tuple(f"{flag}=" for flag in VALUED_FLAGS)):
            out.append(argument)
    return out


def torchrun_arguments(launch: Launch) -> list[str]:
    """torchrun's options: a standalone rendezvous on a free port for one machine, else a static one."""
    if launch.nnodes == 1 and launch.master_addr is None and launch.master_port is None:
        return ["--standalone", "--nproc_per_node", str(launch.processes)]
    if launch.nnodes > 1 and not launch.master_addr:
        raise MmcliError("--nnodes: several machines need --master-addr (the address of the machine with --node-rank 0)",
                         hint="e.g. --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 on the first")
    if not 0 <= launch.node_rank < launch.nnodes:
        raise MmcliError(f"--node-rank: {launch.node_rank} is not between 0 and {launch.nnodes - 1} (--nnodes {launch.nnodes})")
    return ["--nnodes", str(launch.nnodes), "--node_rank", str(launch.node_rank), "--nproc_per_node",
            str(launch.processes), "--master_addr", launch.master_addr or "127.0.0.1",
            "--master_port", str(launch.master_port or 29500)]


def _die_with_parent() -> Callable[[], None] | None:
    """For the child: SIGTERM when this process dies (Linux's PR_SET_PDEATHSIG), looked up before the fork."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)


def run_launcher(launch: Launch, argv: list[str], json_output: bool) -> int:
    """Run ``argv`` (this command's ``sys.argv``) again under torchrun; returns the exit code to exit with:
    the main process's own, else torchrun's."""
    from mmcli.training.threads import AUTOMATIC_ENV, available_cores, choose_threads, measured_others

    if launched():
        raise MmcliError("--num-processes: this command already runs under a launcher (torchrun)",
                         hint="leave out --num-processes, or run mmcli without torchrun")
    with tempfile.TemporaryDirectory(prefix="mmcli-launch-") as folder:
        report = Path(folder) / "exit-code"
        env = {**os.environ, REPORT_ENV: str(report)}
        if "OMP_NUM_THREADS" not in env:  # each process's share of the free cores (torchrun would set 1)
            cores = available_cores()
            threads, why = choose_threads(cores, measured_others(launch.processes), launch.processes,
                                          max(1, cores // launch.processes))
            env.update({"OMP_NUM_THREADS": str(threads), AUTOMATIC_ENV: "1"})
            if why:
                print(f"warning: {why}", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "torch.distributed.run", *torchrun_arguments(launch), "-m", "mmcli",
                   *child_arguments(argv[1:])]
        child = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent())
        code = _wait_forwarding_signals(child)
        recorded = report.read_text().strip() if report.is_file() else ""
    if recorded.lstrip("-").isdigit():
        return int(recorded)
    if code == 0:  # a machine without the main process (--node-rank above 0): nothing to report
        return 0
    message = f"the training processes failed (torchrun exit code {code}); their errors are above"
    if json_output:
        sys.stdout.write(json.dumps({"ok": False, "error": message, "exit_code": code or 1}) + "\n")
    print(f"error: {message}", file=sys.stderr)
    return code or 1


def _wait_forwarding_signals(child: subprocess.Popen) -> int:
    def forward(signum: int, frame: Any) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    saved = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def record_exit(code: int) -> None:
    """In the main process under :func:`run_launcher`: the exit code its parent exits with."""
    where = os.environ.get(REPORT_ENV)
    if where and os.environ.get("RANK", "0") == "0":
        Path(where).write_text(str(code))
