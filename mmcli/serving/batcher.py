"""Micro-batching: rows from concurrent requests are answered by one model call."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

Rows = list[dict[str, Any]]
Pending = list[tuple[Rows, asyncio.Future]]


class BatcherStopped(RuntimeError):
    """The server is stopping: this request will not be answered."""


@dataclass
class BatchStats:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    largest_batch: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class MicroBatcher:
    """``await submit(rows)`` -> the answers for ``rows``. A batch closes when it holds ``max_batch``
    rows or ``max_wait_s`` after its first request arrived; ``answer`` runs in one worker thread, so
    the model is never called twice at once and the event loop keeps accepting requests meanwhile.
    ``answer`` is given at most ``max_batch`` rows at a time (a larger request takes several calls),
    so that :meth:`stop` waits for one such call, not for a request of a thousand rows."""

    def __init__(self, answer: Callable[[Rows], Rows], max_batch: int = 32, max_wait_s: float = 0.005) -> None:
        self.answer = answer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[Rows, asyncio.Future] | None] = asyncio.Queue()  # None: stop
        # not a daemon thread: one killed inside torch at interpreter exit can abort the process
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmcli-model")
        self._stopping = threading.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Refuse new requests and fail the queued ones; the model call in flight finishes (its
        requests are answered if it was their last call, else told the server is stopping). Calling
        it again does nothing more."""
        self._stopping.set()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                _fail([item], BatcherStopped("the server is stopping"))
        self._queue.put_nowait(None)  # wakes the collector, which then ends
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self._worker.shutdown, wait=True)  # idle by now

    async def submit(self, rows: Rows) -> Rows:
        if self._stopping.is_set():
            raise BatcherStopped("the server is stopping")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, future))
        return await future

    def _answer(self, rows: Rows) -> Rows:
        """In the worker thread: ``rows`` in calls of at most ``max_batch``, until the batcher stops."""
        answers: Rows = []
        for start in range(0, len(rows), self.max_batch):
            if self._stopping.is_set():
                raise BatcherStopped("the server is stopping")
            answers += self.answer(rows[start:start + self.max_batch])
        return answers

    async def _collect(self) -> Pending:
        """The next batch; empty once stop() was called."""
        loop = asyncio.get_running_loop()
        first = await self._queue.get()
        if first is None:
            return []
        pending = [first]
        size = len(first[0])
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            if item is None:  # stop(): this batch is the last
                break
            pending.append(item)
            size += len(item[0])
        return pending

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set() and (pending := await self._collect()):
            rows = [row for request, _ in pending for row in request]
            try:
                answers = await loop.run_in_executor(self._worker, self._answer, rows)
            except Exception as error:  # every waiting request learns of it; the server keeps running
                _fail(pending, error)
                continue
            self.stats.requests += len(pending)
            self.stats.rows += len(rows)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(rows))
            start = 0
            for request, future in pending:
                if not future.done():
                    future.set_result(answers[start:start + len(request)])
                start += len(request)


def _fail(pending: Pending, error: Exception) -> None:
    for _, future in pending:
        if not future.done():
            future.set_exception(error)
