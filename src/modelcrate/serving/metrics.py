"""Prometheus metrics shared by all workers, without locks.

The supervisor maps one anonymous shared memory block before forking; each worker writes only its own
slot (counters, a latency histogram, and the start time of the request it is busy with), and whichever
worker answers ``/metrics`` sums the slots. A replaced worker inherits its slot, so counters never drop.
"""

from __future__ import annotations

import mmap
import struct
import time
from bisect import bisect_left

ROUTES = ("/invocations", "/ping", "/execution-parameters", "/metrics", "/models", "/models/{name}/invoke", "other")
STATUSES = (200, 400, 404, 405, 406, 408, 409, 413, 415, 500, 503, 504, 507)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # requests answered by one predict call
ROUTE_INDEX = {route: i for i, route in enumerate(ROUTES)}
_STATUS_INDEX = {status: i for i, status in enumerate(STATUSES)}
_OTHER_STATUS = len(STATUSES)  # any status not listed (counted under "other")

_N_STATUS = len(STATUSES) + 1
_N_BUCKETS = len(BUCKETS) + 1  # the last one is +Inf
_COUNTS = 0
_HIST = _COUNTS + len(ROUTES) * _N_STATUS
_SUM = _HIST + len(ROUTES) * _N_BUCKETS
_N_BATCH_BUCKETS = len(BATCH_BUCKETS) + 1
_BATCH_HIST = _SUM + len(ROUTES)
_BATCH_SUM = _BATCH_HIST + _N_BATCH_BUCKETS
_BUSY = _BATCH_SUM + 1  # monotonic start of the request in progress, 0 when idle
_READY = _BUSY + 1
_UNANSWERED = _READY + 1  # requests a draining worker has received and not answered yet
_SLOT = _UNANSWERED + 1
_DOUBLE = struct.calcsize("d")


class SharedMetrics:
    def __init__(self, n_slots: int):
        self.n_slots = n_slots
        self._memory = mmap.mmap(-1, max(n_slots, 1) * _SLOT * _DOUBLE)
        self._values = memoryview(self._memory).cast("d")

    def slot(self, index: int) -> WorkerMetrics:
        return WorkerMetrics(self._values, index * _SLOT)

    def busy_since(self, index: int) -> float:
        return self._values[index * _SLOT + _BUSY]

    def is_ready(self, index: int) -> bool:
        return self._values[index * _SLOT + _READY] > 0

    def unanswered(self, index: int) -> int:
        return int(self._values[index * _SLOT + _UNANSWERED])

    def render(self) -> bytes:
        v = self._values
        total = [sum(v[s * _SLOT + i] for s in range(self.n_slots)) for i in range(_BUSY)]
        lines = [
            "# HELP modelcrate_requests_total Requests answered, by route and HTTP status.",
            "# TYPE modelcrate_requests_total counter",
        ]
        status_names = [*map(str, STATUSES), "other"]
        for r, route in enumerate(ROUTES):
            for s, status in enumerate(status_names):
                count = total[_COUNTS + r * _N_STATUS + s]
                if count:
                    lines.append(f'modelcrate_requests_total{{route="{route}",status="{status}"}} {count:.0f}')
        lines += [
            "# HELP modelcrate_errors_total Requests answered with a 4xx or 5xx status, by route and status.",
            "# TYPE modelcrate_errors_total counter",
        ]
        for r, route in enumerate(ROUTES):
            for s, status in enumerate(status_names):
                count = total[_COUNTS + r * _N_STATUS + s]
                if count and (status == "other" or int(status) >= 400):
                    lines.append(f'modelcrate_errors_total{{route="{route}",status="{status}"}} {count:.0f}')
        lines += [
            "# HELP modelcrate_request_duration_seconds Time from a complete request to its response.",
            "# TYPE modelcrate_request_duration_seconds histogram",
        ]
        for r, route in enumerate(ROUTES):
            base = _HIST + r * _N_BUCKETS
            count = sum(total[base : base + _N_BUCKETS])
            if not count:
                continue
            cumulative = 0.0
            for b, bound in enumerate([*map(str, BUCKETS), "+Inf"]):
                cumulative += total[base + b]
                lines.append(
                    f'modelcrate_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} {cumulative:.0f}'
                )
            lines.append(f'modelcrate_request_duration_seconds_sum{{route="{route}"}} {total[_SUM + r]:.6f}')
            lines.append(f'modelcrate_request_duration_seconds_count{{route="{route}"}} {count:.0f}')
        batches = sum(total[_BATCH_HIST : _BATCH_HIST + _N_BATCH_BUCKETS])
        if batches:
            lines.append("# HELP modelcrate_batch_requests Requests answered by one predict call of the batcher.")
            lines.append("# TYPE modelcrate_batch_requests histogram")
            cumulative = 0.0
            for b, bound in enumerate([*map(str, BATCH_BUCKETS), "+Inf"]):
                cumulative += total[_BATCH_HIST + b]
                lines.append(f'modelcrate_batch_requests_bucket{{le="{bound}"}} {cumulative:.0f}')
            lines.append(f"modelcrate_batch_requests_sum {total[_BATCH_SUM]:.0f}")
            lines.append(f"modelcrate_batch_requests_count {batches:.0f}")
        lines.append("# HELP modelcrate_workers_ready Worker processes that have loaded the model.")
        lines.append("# TYPE modelcrate_workers_ready gauge")
        lines.append(f"modelcrate_workers_ready {sum(self.is_ready(s) for s in range(self.n_slots))}")
        return ("\n".join(lines) + "\n").encode()


class WorkerMetrics:
    """One worker's view: writes only its own slot."""

    __slots__ = ("_base", "_values")

    def __init__(self, values: memoryview, base: int):
        self._values = values
        self._base = base

    def observe(self, route: int, status: int, seconds: float) -> None:
        v, base = self._values, self._base
        v[base + _COUNTS + route * _N_STATUS + _STATUS_INDEX.get(status, _OTHER_STATUS)] += 1
        v[base + _HIST + route * _N_BUCKETS + bisect_left(BUCKETS, seconds)] += 1
        v[base + _SUM + route] += seconds

    def observe_batch(self, requests: int) -> None:
        v, base = self._values, self._base
        v[base + _BATCH_HIST + bisect_left(BATCH_BUCKETS, requests)] += 1
        v[base + _BATCH_SUM] += requests

    def begin(self) -> None:
        self._values[self._base + _BUSY] = time.monotonic()

    def end(self) -> None:
        self._values[self._base + _BUSY] = 0.0

    def set_ready(self, ready: bool) -> None:
        self._values[self._base + _READY] = 1.0 if ready else 0.0

    def set_unanswered(self, requests: int) -> None:
        self._values[self._base + _UNANSWERED] = requests
