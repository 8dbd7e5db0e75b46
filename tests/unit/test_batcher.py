"""Micro-batching: concurrent requests share model calls, in order, and one failure reaches its waiters."""

from __future__ import annotations

import asyncio
import selectors
import threading

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


class _FastForward(selectors.DefaultSelector):
    """Waits for the event loop of :class:`_VirtualTimeLoop`: where the loop would sleep until its next
    timer with nothing else to do, the clock jumps there instead."""

    loop: _VirtualTimeLoop

    def select(self, timeout=None):
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None or self.loop.in_threads or not self.loop.fast_forward:
            return super().select(timeout)  # a worker thread's answer (or other I/O) wakes it
        self.loop.now += timeout
        return []


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a clock that stands still while anything runs (the loop's callbacks or a call
    in a worker thread) and jumps to the next timer when nothing does: ``max_wait_s`` is measured in
    that time, exactly, however fast or busy the machine is."""

    def __init__(self) -> None:
        self.now, self.in_threads, self.fast_forward = 1000.0, 0, True
        selector = _FastForward()
        selector.loop = self
        super().__init__(selector)

    def time(self) -> float:
        return self.now

    def run_in_executor(self, executor, func, *args):
        future = super().run_in_executor(executor, func, *args)
        self.in_threads += 1
        future.add_done_callback(lambda _: setattr(self, "in_threads", self.in_threads - 1))
        return future


def _run_in_virtual_time(coroutine):
    loop = _VirtualTimeLoop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.fast_forward = False
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def test_a_batch_closes_max_wait_after_its_first_request_with_whoever_came_meanwhile():
    max_wait = 0.25
    calls: list[tuple[float, list[int]]] = []

    async def main():
        loop = asyncio.get_running_loop()

        def answer(rows):
            calls.append((loop.time(), [row["a"] for row in rows]))
            return rows

        batcher = MicroBatcher(answer, max_batch=64, max_wait_s=max_wait)
        batcher.start()
        began = loop.time()
        first = asyncio.ensure_future(batcher.submit([{"a": 1}]))
        await asyncio.sleep(0.8 * max_wait)  # room is left in the batch: it waits, and this one joins it
        second = asyncio.ensure_future(batcher.submit([{"a": 2}]))
        # a batcher that never closes a batch that has room fails here (the clock jumps to this timer)
        answers = await asyncio.wait_for(asyncio.gather(first, second), timeout=3600)
        lone = await asyncio.wait_for(batcher.submit([{"a": 3}]), timeout=3600)
        await batcher.stop()
        return began, answers, lone

    began, answers, lone = _run_in_virtual_time(main())
    assert answers == [[{"a": 1}], [{"a": 2}]] and lone == [{"a": 3}]
    assert [rows for _, rows in calls] == [[1, 2], [3]]
    assert calls[0][0] - began == pytest.approx(max_wait)  # not before (the second joined), not after
    assert calls[1][0] - calls[0][0] == pytest.approx(max_wait)  # a lone request: max_wait, then alone


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
    in_call, release = threading.Event(), threading.Event()

    def answer(rows):
        calls.append(len(rows))
        in_call.set()
        release.wait(timeout=60)  # the call in flight lasts until the test lets it end
        return rows

    async def main():
        batcher = MicroBatcher(answer, max_batch=4, max_wait_s=0.0)
        batcher.start()
        try:
            large = asyncio.ensure_future(batcher.submit([{"a": i} for i in range(200)]))  # 50 calls of 4 rows
            assert await asyncio.to_thread(in_call.wait, 60), "the model was never called"
            queued = asyncio.ensure_future(batcher.submit([{"a": -1}]))
            await asyncio.sleep(0)  # in the queue, behind the large request
            stopping = asyncio.ensure_future(batcher.stop())
            await asyncio.sleep(0)  # stop has begun: it waits for the call in flight
            with pytest.raises(BatcherStopped):  # new requests are refused at once
                await asyncio.wait_for(batcher.submit([{"a": 1}]), timeout=60)
        finally:
            release.set()
        await asyncio.wait_for(stopping, timeout=60)
        for request in (large, queued):  # each learns why, instead of waiting for ever
            with pytest.raises(BatcherStopped):
                await asyncio.wait_for(request, timeout=60)
        await batcher.stop()  # a second stop (uvicorn's lifespan after the signal) does nothing more

    _run(main())
    assert calls == [4], "stop waits for the one call in flight (at most max_batch rows), not for the whole request"
