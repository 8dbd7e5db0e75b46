"""Settings for every test process and the commands they start."""

from __future__ import annotations

import os

# The thread count training would choose anyway (mmcli/training/threads.py), stated: the commands tests
# start then never add the busy-machine warning to the output they check.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1))
