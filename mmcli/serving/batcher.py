"""Micro-batching: rows from concurrent requests are answered by one model call."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

Rows = list[dict[str, Any]]


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
    the model is never called twice at once and the event loop keeps accepting requests meanwhile."""

    def __init__(self, answer: Callable[[Rows], Rows], max_batch: int = 32, max_wait_s: float = 0.005) -> None:
        self.answer = answer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[Rows, asyncio.Future]] = asyncio.Queue()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmcli-model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._worker.shutdown(wait=True)

    async def submit(self, rows: Rows) -> Rows:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, future))
        return await future

    async def _collect(self) -> list[tuple[Rows, asyncio.Future]]:
        loop = asyncio.get_running_loop()
        pending = [await self._queue.get()]
        size = len(pending[0][0])
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            pending.append(item)
            size += len(item[0])
        return pending

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._collect()
            rows = [row for request, _ in pending for row in request]
            try:
                answers = await loop.run_in_executor(self._worker, self.answer, rows)
            except Exception as error:  # every waiting request learns of it; the server keeps running
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
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
