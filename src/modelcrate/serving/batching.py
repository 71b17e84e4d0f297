"""Adaptive batching: concurrent /invocations of one model in one worker share one predict call.

The event loop decodes each request as it arrives (a bad one is answered at once, alone) and queues its
records. A batch is predicted in one background thread, so the loop keeps reading and decoding requests
while the model works (numpy, XGBoost and scikit-learn release the GIL); whatever arrives meanwhile forms
the next batch. A lone request on an idle worker is predicted inline, so batching adds no hop to it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from modelcrate.predictors import Prediction
from modelcrate.serving.errors import RequestTimeout
from modelcrate.serving.hooks import RequestContext

if TYPE_CHECKING:
    from modelcrate.serving.config import ServingConfig
    from modelcrate.serving.service import InferenceService
    from modelcrate.serving.worker import HttpConnection, WorkerServer


@dataclass(slots=True)
class QueuedRequest:
    conn: HttpConnection
    context: RequestContext
    records: np.ndarray
    started: float  # perf_counter when the request was complete, for the latency metric
    queued_at: float  # loop time, for the wait of the ``on`` mode
    keep_alive: bool
    answered: bool = False  # a 504 went out while its batch was still predicting


def split(prediction: Prediction, sizes: list[int]) -> list[Prediction]:
    """One batch's prediction cut back into each request's rows, in order."""
    parts, start, probabilities = [], 0, prediction.probabilities
    for size in sizes:
        end = start + size
        parts.append(
            replace(
                prediction,
                values=prediction.values[start:end],
                probabilities=None if probabilities is None else probabilities[start:end],
            )
        )
        start = end
    return parts


class Batcher:
    def __init__(
        self, server: WorkerServer, service: InferenceService, config: ServingConfig, loop: asyncio.AbstractEventLoop
    ):
        self.server = server
        self.service = service
        self.loop = loop
        self.wait_to_fill = config.batching == "on"
        self.max_rows = config.max_batch_rows
        self.max_wait = config.max_batch_wait_ms / 1000
        self.timeout = config.timeout
        self.queue: deque[QueuedRequest] = deque()
        self.queued_rows = 0
        self.predicting = False
        self.flush_handle: asyncio.Handle | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelcrate-predict")

    def submit(self, conn: HttpConnection, headers: dict, body: bytes, started: float, keep_alive: bool) -> None:
        """Decode one request now and queue its records; its answer is written when its batch is predicted."""
        server = self.server
        inference_id, content_type, accept, attributes = server.request_headers(headers)
        try:
            with server.deadline():
                context = self.service.request_context(content_type, accept, attributes, inference_id)
                records = self.service.decode_records(body, context)
        except BaseException as exc:
            server.finish(conn, *server.error_answer(exc, inference_id), started, keep_alive)
            return
        request = QueuedRequest(conn, context, records, started, self.loop.time(), keep_alive)
        if not (self.wait_to_fill or self.predicting or self.queue or self.flush_handle):
            # Alone on an idle worker: answered now, as without batching. The requests read after it in this
            # same poll of the loop queue up behind the flush scheduled here, and share the next predict call.
            self.flush_handle = self.loop.call_soon(self._flush)
            self.server.metrics.observe_batch(1)
            self._predict_inline(request)
            return
        conn.respond_later()
        self.queue.append(request)
        self.queued_rows += len(records)
        if self.wait_to_fill and self.queued_rows >= self.max_rows and self.flush_handle is not None:
            self.flush_handle.cancel()  # the batch is full: stop waiting
            self.flush_handle = None
        self._schedule()

    def _schedule(self) -> None:
        if self.predicting or self.flush_handle is not None or not self.queue:
            return
        if self.wait_to_fill and self.queued_rows < self.max_rows:
            self.flush_handle = self.loop.call_at(self.queue[0].queued_at + self.max_wait, self._flush)
        else:
            # Soon, not now: the other requests read in the same poll of the loop join this batch first.
            self.flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_handle = None
        if not self.queue:
            return
        batch, rows = [], 0
        while self.queue and (not batch or rows + len(self.queue[0].records) <= self.max_rows):
            request = self.queue.popleft()
            batch.append(request)
            rows += len(request.records)
        self.queued_rows -= rows
        self.server.metrics.observe_batch(len(batch))
        if len(batch) == 1 and not self.queue:
            self._predict_inline(batch[0])
            self._schedule()
            return
        self.predicting = True
        self.server.metrics.begin()
        expiry = self.loop.call_later(self.timeout, self._expire, batch)
        records = [request.records for request in batch]
        future = self.executor.submit(self._predict, records)
        future.add_done_callback(lambda done: self.loop.call_soon_threadsafe(self._predicted, batch, done, expiry))

    def _predict_inline(self, request: QueuedRequest) -> None:
        """As without batching: the request's timeout interrupts the predict itself."""
        server = self.server
        server.metrics.begin()
        try:
            with server.deadline():
                prediction = self.service.predict_records(request.records)
                answer = (200, *self.service.encode(prediction, request.context))
        except BaseException as exc:
            answer = server.error_answer(exc, request.context.inference_id)
        finally:
            server.metrics.end()
        server.finish(request.conn, *answer, request.started, request.keep_alive)

    def _predict(self, records: list[np.ndarray]) -> list[Prediction | Exception]:
        """In the predict thread: one call for the whole batch, or one per request when the batch fails."""
        sizes = [len(part) for part in records]
        try:
            prediction = self.service.predict_records(np.concatenate(records))
            if len(prediction.values) == sum(sizes):
                return split(prediction, sizes)
        except Exception:
            pass
        # One request's records may fail the whole call: predicted alone, each error reaches only its owner.
        return [self._predict_alone(part) for part in records]

    def _predict_alone(self, records: np.ndarray) -> Prediction | Exception:
        try:
            return self.service.predict_records(records)
        except Exception as exc:
            return exc

    def _expire(self, batch: list[QueuedRequest]) -> None:
        """The batch's predict ran past the timeout: each of its requests gets its 504 now. The thread cannot
        be interrupted; the supervisor kills the worker if it never finishes."""
        for request in batch:
            request.answered = True
            answer = self.server.error_answer(RequestTimeout(), request.context.inference_id)
            self.server.finish(request.conn, *answer, request.started, request.keep_alive)

    def _predicted(self, batch: list[QueuedRequest], done: Future, expiry: asyncio.TimerHandle) -> None:
        expiry.cancel()
        self.predicting = False
        self.server.metrics.end()
        try:
            outcomes = done.result()
        except BaseException as exc:
            outcomes = [exc] * len(batch)
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.answered:
                continue
            if isinstance(outcome, BaseException):
                answer = self.server.error_answer(outcome, request.context.inference_id)
            else:
                try:
                    answer = (200, *self.service.encode(outcome, request.context))
                except Exception as exc:
                    answer = self.server.error_answer(exc, request.context.inference_id)
            self.server.finish(request.conn, *answer, request.started, request.keep_alive)
        self._schedule()
