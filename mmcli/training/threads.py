"""CPU threads per training process. torch starts one thread per core; when other programs keep cores
busy (or several training processes share a machine) those threads wait on each other, and a training
ran 5x slower on a busy 2-core machine than with one thread. Unless ``training.num_threads`` (or
OMP_NUM_THREADS) says how many, each process takes its share of the cores (cores / processes on this
machine), fewer when other programs keep cores busy, and says so.

Float sums depend on the thread count, so the choice is made once per process, recorded with the run
(``metrics.json``: training.threads; checkpoints) and kept by a resumed run: resuming stays exact. Two
separately started runs on a machine whose load changed may differ in the last bits: set
``training.num_threads`` for bit-for-bit identical reruns."""

from __future__ import annotations

import os
import time

SAMPLE_SECONDS = 0.25  # how long the other programs' CPU use is measured
AUTOMATIC_ENV = "MMCLI_AUTOMATIC_THREADS"  # set by the launcher beside the OMP_NUM_THREADS it chose


def available_cores() -> int:
    """The cores this process may run on (its affinity: a container's or taskset's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_processes() -> int:
    """Training processes on this machine (torchrun sets LOCAL_WORLD_SIZE)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _busy_cores_now(seconds: float = SAMPLE_SECONDS) -> float | None:
    """Cores busy over a short sample, from /proc/stat (Linux); None elsewhere."""
    def read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]) - idle, sum(values[:8])

    try:
        busy0, total0 = read()
        time.sleep(seconds)
        busy1, total1 = read()
    except (OSError, ValueError, IndexError):
        return None
    ticks = total1 - total0
    return (busy1 - busy0) / ticks * (os.cpu_count() or 1) if ticks > 0 else None


def others_load(load_average: float, busy_now: float | None, processes: int) -> float:
    """Cores kept busy by other programs. The 1-minute load average still counts this run's own
    preprocessing for a minute after it ended, and a sample of the CPU use now may catch a passing
    burst: only what both see is counted. Our own processes (one runnable each; while this one samples
    it sleeps, the others may run) are taken out."""
    from_average = load_average - processes
    if busy_now is None:
        return max(0.0, from_average)
    return max(0.0, min(from_average, busy_now - (processes - 1)))


def choose_threads(cores: int, others: float, processes: int, default: int) -> tuple[int, str | None]:
    """Threads for one of ``processes`` training processes on ``cores`` cores with ``others`` cores busy
    elsewhere; ``default``: what torch would use. Returns (threads, why) where ``why`` explains a choice
    below the default (None when the default stands)."""
    share = max(1, cores // processes)
    free = max(1, int(cores - others + 0.5) // processes)  # a core counts as taken once more than half of it is
    threads = max(1, min(default, share, free))
    if threads >= default:
        return default, None
    reasons = []
    if others >= 0.5 and free < share:
        reasons.append(f"other programs keep about {others:.1f} of {cores} cores busy")
    if processes > 1 and share < default:
        reasons.append(f"{processes} training processes share {cores} cores")
    why = " and ".join(reasons) or f"{cores} cores are available to this process"
    return threads, (f"training.num_threads is not set: {why}, so each process uses {threads} CPU thread"
                     f"{'s' if threads > 1 else ''} instead of {default} (oversubscribed threads wait on each "
                     "other; set training.num_threads to choose)")


def measured_others(processes: int) -> float:
    """Cores other programs keep busy now (load average and a short sample, see :func:`others_load`)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    busy = _busy_cores_now() if load - processes >= 0.5 else None  # no sample needed on an idle machine
    return others_load(load, busy, processes)


_decided: list[int] = []  # the automatic choice, made once per process


def apply_threads(configured: int | None, resumed: int | None = None) -> str | None:
    """Set torch's CPU threads: ``training.num_threads`` when given; else, unless the user's
    OMP_NUM_THREADS says how many, the thread count a resumed run trained with (``resumed``: the result
    depends on it, bit for bit), else the launcher's choice for its processes, else
    :func:`choose_threads` on the measured load, once per process. Returns the warning to show, if any."""
    import torch

    if configured:
        torch.set_num_threads(configured)
        return None
    automatic = bool(os.environ.get(AUTOMATIC_ENV))
    if "OMP_NUM_THREADS" in os.environ and not automatic:
        return None
    if resumed:
        torch.set_num_threads(resumed)
        return None
    if automatic:  # the launcher chose for its processes (torch read OMP_NUM_THREADS)
        return None
    if _decided:
        torch.set_num_threads(_decided[0])
        return None
    processes = local_processes()
    threads, why = choose_threads(available_cores(), measured_others(processes), processes, torch.get_num_threads())
    torch.set_num_threads(threads)
    _decided.append(threads)
    return why
