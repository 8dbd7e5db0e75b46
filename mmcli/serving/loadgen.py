"""A load test for a running server: concurrent clients, requests/s and latency percentiles."""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def post_json(url: str, payload: dict[str, Any], timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def load_test(url: str, payloads: list[dict[str, Any]], requests: int = 200, concurrency: int = 16,
              timeout: float = 60.0) -> dict[str, Any]:
    """Send ``requests`` POSTs (cycling through ``payloads``) from ``concurrency`` threads."""

    def one(i: int) -> tuple[float, int, str | None]:
        start = time.perf_counter()
        try:
            status, body = post_json(url, payloads[i % len(payloads)], timeout)
            error = None if status == 200 else str(body.get("detail", status))
        except OSError as failure:
            status, error = 0, str(failure)
        return time.perf_counter() - start, status, error

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    seconds = time.perf_counter() - began
    latencies = sorted(latency for latency, _, _ in results)
    errors = [error for _, _, error in results if error is not None]
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {"requests": requests, "concurrency": concurrency, "errors": len(errors), "first_errors": errors[:3],
            "seconds": seconds, "requests_per_s": requests / seconds,
            "p50_ms": 1000 * quantiles[49], "p99_ms": 1000 * quantiles[98]}
