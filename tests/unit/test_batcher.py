"""Micro-batching: concurrent requests share model calls, in order, and one failure reaches its waiters."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mmcli.serving.batcher import BatcherStopped, MicroBatcher


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_are_answered_together_and_in_order():
    calls: list[int] = []
    threads: set[str] = set()

    def answer(rows):
        calls.append(len(rows))
        threads.add(threading.current_thread().name)
        return [{"double": row["x"] * 2} for row in rows]

    async def main():
        batcher = MicroBatcher(answer, max_batch=8, max_wait_s=0.5)
        batcher.start()
        requests = [[{"x": i}] if i % 2 else [{"x": i}, {"x": -i}] for i in range(6)]
        answers = await asyncio.gather(*(batcher.submit(rows) for rows in requests))
        await batcher.stop()
        return requests, answers, batcher.stats

    requests, answers, stats = _run(main())
    for rows, got in zip(requests, answers):
        assert got == [{"double": row["x"] * 2} for row in rows]
    # all six are queued before the collector runs: 9 rows with room for 8 make a full batch of 8,
    # then the last request alone once max_wait has passed
    assert sum(calls) == 9 and max(calls) <= 8 and len(calls) == 2
    assert stats.requests == 6 and stats.rows == 9 and stats.batches == 2 and stats.largest_batch == max(calls)
    assert len(threads) == 1 and threading.main_thread().name not in threads  # one worker thread, not the loop's


def test_a_lone_request_waits_at_most_max_wait():
    async def main():
        batcher = MicroBatcher(lambda rows: rows, max_batch=64, max_wait_s=0.01)
        batcher.start()
        answer = await asyncio.wait_for(batcher.submit([{"a": 1}]), timeout=30)
        await batcher.stop()
        return answer

    assert _run(main()) == [{"a": 1}]


def test_a_failing_batch_fails_its_requests_and_the_next_batch_is_answered():
    state = {"fail": True}

    def answer(rows):
        if state.pop("fail", False):
            raise RuntimeError("decoder exploded")
        return rows

    async def main():
        batcher = MicroBatcher(answer, max_batch=4, max_wait_s=0.0)
        batcher.start()
        with pytest.raises(RuntimeError, match="decoder exploded"):
            await batcher.submit([{"a": 1}])
        after = await batcher.submit([{"a": 2}])
        await batcher.stop()
        return after

    assert _run(main()) == [{"a": 2}]


def test_stop_waits_for_one_call_of_at_most_max_batch_rows_not_for_a_whole_large_request():
    calls: list[int] = []

    def answer(rows):
        calls.append(len(rows))
        time.sleep(0.05 * len(rows))  # 200 rows in one call would take 10 s
        return rows

    async def main():
        batcher = MicroBatcher(answer, max_batch=4, max_wait_s=0.0)
        batcher.start()
        large = asyncio.ensure_future(batcher.submit([{"a": i} for i in range(200)]))
        while not calls:
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(batcher.submit([{"a": -1}]))
        await asyncio.sleep(0)
        began = time.monotonic()
        await batcher.stop()
        stopped_in = time.monotonic() - began
        for request in (large, queued):  # each learns why, instead of waiting for ever
            with pytest.raises(BatcherStopped):
                await asyncio.wait_for(request, timeout=30)
        with pytest.raises(BatcherStopped):
            await batcher.submit([{"a": 1}])
        await batcher.stop()  # a second stop (uvicorn's lifespan after the signal) does nothing more
        return stopped_in

    stopped_in = _run(main())
    assert stopped_in < 2, stopped_in  # one call of 4 rows takes 0.2 s
    assert max(calls) <= 4 and sum(calls) < 200
