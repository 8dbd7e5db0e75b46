"""CPU threads per training process when training.num_threads is not set: the count on fake load figures
(it follows the cores and processes, never the load, which only brings a warning), and what is measured."""

from __future__ import annotations

import pytest

from mmcli.training import threads
from mmcli.training.threads import choose_threads, others_load


def test_an_idle_machine_keeps_torchs_threads():
    assert choose_threads(cores=8, others=0.0, processes=1, default=8) == (8, None)
    assert choose_threads(cores=2, others=0.3, processes=1, default=2) == (2, None)  # a passing daemon


def test_a_busy_machine_keeps_its_threads_and_is_told_which_count_would_not_wait():
    # results must not change with the load, so the count stays: the warning gives the faster one
    threads_, why = choose_threads(cores=2, others=4.0, processes=1, default=2)  # load 5 on 2 cores
    assert threads_ == 2
    assert "other programs keep about 4.0 of 2 cores busy" in why and "training.num_threads=1" in why
    threads_, why = choose_threads(cores=16, others=6.0, processes=1, default=16)
    assert threads_ == 16 and "training.num_threads=10" in why


def test_several_processes_share_the_cores():
    threads_, why = choose_threads(cores=16, others=0.0, processes=4, default=16)
    assert threads_ == 4 and "4 training processes share 16 cores" in why
    assert choose_threads(cores=2, others=0.0, processes=2, default=2)[0] == 1
    threads_, why = choose_threads(cores=16, others=8.0, processes=2, default=8)  # busy and shared
    assert threads_ == 8 and "training.num_threads=4" in why
    assert choose_threads(cores=16, others=0.0, processes=2, default=8) == (8, None)  # the launcher's share


def test_never_below_one_thread_nor_above_the_default():
    assert choose_threads(cores=2, others=30.0, processes=4, default=1) == (1, None)
    assert choose_threads(cores=64, others=0.0, processes=1, default=4) == (4, None)


def test_others_load_counts_what_the_load_average_and_a_sample_both_see():
    # our own just-finished preprocessing still in the load average, nothing busy now: not contention
    assert others_load(load_average=3.0, busy_now=0.1, processes=1) == pytest.approx(0.1)
    # a sustained load that the sample sees too
    assert others_load(load_average=5.0, busy_now=2.0, processes=1) == pytest.approx(2.0)
    # a passing burst in the sample only
    assert others_load(load_average=1.1, busy_now=2.0, processes=1) == pytest.approx(0.1)
    # under torchrun the sibling process may be running while this one samples
    assert others_load(load_average=2.0, busy_now=1.0, processes=2) == pytest.approx(0.0)
    assert others_load(load_average=4.0, busy_now=None, processes=1) == pytest.approx(3.0)


def test_apply_threads_sets_torch_and_says_why(monkeypatch):
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.AUTOMATIC_ENV, raising=False)
    monkeypatch.setattr(threads, "_decided", [])
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    monkeypatch.setattr(threads, "_busy_cores_now", lambda seconds=0.25: 2.0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    why = threads.apply_threads(None)
    assert chosen == [2] and "training.num_threads=1" in why
    assert threads.apply_threads(3) is None and chosen == [2, 3]  # training.num_threads wins, silently
    assert threads.apply_threads(None) is None and chosen == [2, 3, 2]  # decided once per process
    assert threads.apply_threads(None, resumed=2) is None and chosen[-1] == 2  # a resumed run keeps its count
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.apply_threads(None, resumed=1) is None and chosen[-1] == 2  # the user's OMP_NUM_THREADS wins
