"""CPU threads per training process. Unless ``training.num_threads`` (or OMP_NUM_THREADS) says how many,
each process takes its share of the cores (cores / training processes on this machine), whatever else
runs: float sums depend on the thread count, and a result that changed with the machine's load would
not reproduce (the quickstart's seed 0 lands on another trajectory with 1 thread than with 2). When other
programs keep cores busy, the oversubscribed threads wait on each other (a training ran 5x slower on a
busy 2-core machine than with one thread): a warning says so and which ``training.num_threads`` would
avoid it. The count is recorded with the run (``metrics.json``: training.threads; checkpoints) and kept
by a resumed run: resuming stays exact."""

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
    elsewhere; ``default``: what torch would use. The count never depends on ``others`` (see the module);
    returns (threads, note) where ``note`` says why the count is below the default, or which count the
    busy cores would call for (None when neither applies)."""
    threads = max(1, min(default, cores // processes))
    notes = []
    if threads < default:
        notes.append(f"{processes} training processes share {cores} cores, so each uses {threads} CPU thread"
                     f"{'s' if threads > 1 else ''} instead of {default}")
    free = max(1, int(cores - others + 0.5) // processes)  # a core counts as taken once more than half of it is
    if others >= 0.5 and free < threads:
        notes.append(f"other programs keep about {others:.1f} of {cores} cores busy, so the {threads} threads "
                     f"of each process wait on each other (several times slower): training.num_threads={free} "
                     f"avoids that (results then differ slightly from a {threads}-thread run)")
    if not notes:
        return threads, None
    return threads, "training.num_threads is not set: " + "; ".join(notes)


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
