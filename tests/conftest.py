"""Settings for every test process and the commands they start."""

from __future__ import annotations

import os

# Float sums depend on the CPU thread count, and when neither training.num_threads nor OMP_NUM_THREADS
# says how many, training chooses by the machine's load (mmcli/training/threads.py): tests that compare
# separately started runs bit for bit need one fixed count, whatever else runs on the machine.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1))
