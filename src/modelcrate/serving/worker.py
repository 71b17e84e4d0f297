"""A worker process: loads the model, drops root if it has it, then answers HTTP on the shared listening socket.

The HTTP layer is hand-written on asyncio (uvloop when installed) with httptools' parser, because it
is the hot path. Predictions run inline in the event loop, so a busy worker stops accepting and the
kernel hands new connections to an idle one, except when adaptive batching (batching.py) predicts a batch
of concurrent requests in its background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from time import monotonic
from urllib.parse import unquote

import httptools

from modelcrate.predictors import trust
from modelcrate.serving.batching import Batcher
from modelcrate.serving.config import ServingConfig
from modelcrate.serving.draining import accept_backlog, has_unread_bytes
from modelcrate.serving.errors import HttpError, RequestTimeout
from modelcrate.serving.metrics import ROUTE_INDEX, SharedMetrics, WorkerMetrics
from modelcrate.serving.model_table import ModelTable
from modelcrate.serving.multi_model import PRELOAD_SECONDS, MultiModelHost
from modelcrate.serving.privileges import ServingUser, drop_privileges
from modelcrate.serving.service import InferenceService

log = logging.getLogger("modelcrate.serving")

TEXT = "text/plain; charset=utf-8"
DRAIN_CHECK_SECONDS = 0.05
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    406: b"Not Acceptable",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    415: b"Unsupported Media Type",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    507: b"Insufficient Storage",
}
_PATHS = {
    b"/invocations": "/invocations",
    b"/ping": "/ping",
    b"/execution-parameters": "/execution-parameters",
    b"/metrics": "/metrics",
}


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "awaiting",
        "body",
        "failed",
        "head_size",
        "header_bytes",
        "headers",
        "in_body",
        "in_message",
        "parser",
        "pipelined",
        "server",
        "size",
        "too_large",
        "transport",
        "url",
        "waiting_since",
    )

    def __init__(self, server: WorkerServer):
        self.server = server
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.in_message = False
        self.in_body = False
        self.head_size = 0  # bytes received since the current head began (see data_received)
        self.awaiting = False  # a batched request's answer is still owed
        self.pipelined: list[tuple] = []  # requests that came behind it on this connection
        self.failed: tuple[int, bytes] | None = None  # a refusal owed after them, then the connection closes

    def connection_made(self, transport):
        self.transport = transport
        if len(self.server.connections) >= self.server.max_connections and not self.server.make_room():
            transport.close()
            return
        self.server.connections.add(self)
        self.waiting_since = monotonic()  # for its first request: WorkerServer.close_stalled times each wait

    def connection_lost(self, exc):
        self.server.connections.discard(self)

    def data_received(self, data: bytes):
        if not self.in_body:
            self.head_size += len(data)
        try:
            self.parser.feed_data(data)
            if self.pipelined and not self.awaiting:  # draining: held until the whole buffer was parsed
                self.answer_pipelined()
        except httptools.HttpParserUpgrade:
            self.fail(400, b"protocol upgrades are not supported\n")
        except httptools.HttpParserCallbackError as exc:
            self.refuse(exc.__context__)
        except httptools.HttpParserError:
            self.fail(400, b"malformed HTTP request\n")
        else:
            # httptools gathers a header's whole value before on_header sees it: a head still incomplete past
            # the limits is refused here, before that value can grow.
            if not self.in_body and self.head_size > self.server.max_head_bytes:
                self.refuse(self.server.too_many_header_bytes())

    def refuse(self, error: BaseException | None) -> None:
        """Answer a request a parser callback refused (an HttpError), and close the connection."""
        if isinstance(error, HttpError):
            self.fail(error.status, error.message.encode() + b"\n")
            self.server.metrics.observe(ROUTE_INDEX["other"], error.status, 0.0)
        else:
            self.fail(400, b"malformed HTTP request\n")

    def fail(self, status: int, message: bytes) -> None:
        """Refuse what follows on this connection and close it, once the answers owed before it are sent."""
        self.failed = (status, message)
        self.transport.pause_reading()
        if not self.awaiting:
            self.answer_pipelined()

    # httptools callbacks
    def on_message_begin(self):
        self.in_message = True
        self.url = b""
        self.headers = {}
        self.body = []
        self.size = 0
        self.too_large = False
        self.header_bytes = 0
        self.waiting_since = monotonic()

    def on_url(self, url: bytes):
        self.url += url
        if len(self.url) > self.server.max_url_bytes:
            raise HttpError(f"the URL exceeds {self.server.max_url_bytes} bytes (MODELCRATE_MAX_URL_BYTES)", 414)

    def on_header(self, name: bytes, value: bytes):
        # Counted here, checked once the head is complete: data_received bounds the memory until then.
        key = name.lower()
        self.headers[key] = value
        self.header_bytes += len(name) + len(value)  # a name sent again counts here, not as another header
        if key == b"transfer-encoding" and value.strip().lower() != b"chunked":
            # llhttp reads "gzip, chunked" as chunked and would hand over a body still gzip-coded.
            raise HttpError(
                f"Transfer-Encoding {value.decode('latin-1')[:40]!r} is not supported; send the body as is "
                "(Content-Length) or with Transfer-Encoding: chunked alone",
                501,
            )

    def on_headers_complete(self):
        if self.header_bytes > self.server.max_header_bytes:
            raise self.server.too_many_header_bytes()
        if len(self.headers) > self.server.max_headers:
            raise HttpError(f"more than {self.server.max_headers} request headers (MODELCRATE_MAX_HEADERS)", 431)
        self.in_body = True
        self.head_size = 0
        self.waiting_since = monotonic()
        length = self.headers.get(b"content-length")
        if length and length.isdigit() and int(length) > self.server.max_payload:
            self.too_large = True
            if self.headers.get(b"expect", b"").lower() == b"100-continue":
                self.server.reject_too_large(self)

    def on_body(self, chunk: bytes):
        self.size += len(chunk)
        if self.size > self.server.max_payload:
            self.too_large = True
            self.body = []  # read and drop the rest, so the client still gets its 413
        elif not self.too_large:
            self.body.append(chunk)

    def on_message_complete(self):
        self.in_message = False
        self.in_body = False
        if self.transport.is_closing():
            return
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        request = (self.parser.get_method(), self.url, self.headers, body, self.parser.should_keep_alive())
        # HTTP pipelining: answers go out in request order. While draining, every request waits for the end of
        # its buffer, so that the last one received is the one answered with Connection: close.
        if self.awaiting or self.server.draining:
            self.pipelined.append(request)
            self.transport.pause_reading()
            return
        self.server.dispatch(self, *request)

    def respond_later(self) -> None:
        self.awaiting = True

    def owes_nothing(self) -> bool:
        return not (self.in_message or self.awaiting or self.pipelined or self.failed)

    def answer_pipelined(self) -> None:
        """Answer the requests queued on this connection, in order, until one waits for its batch."""
        while self.pipelined and not self.awaiting and not self.transport.is_closing():
            self.server.dispatch(self, *self.pipelined.pop(0))
            if not self.pipelined and not self.failed and not self.transport.is_closing():
                self.transport.resume_reading()
        if self.failed and not self.pipelined and not self.awaiting and not self.transport.is_closing():
            self.respond(*self.failed, TEXT, keep_alive=False)

    def respond(self, status: int, body: bytes, content_type: str, keep_alive: bool = True):
        if self.server.draining and not self.pipelined and not self.in_message:
            keep_alive = False  # the last request received on this connection
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            status,
            _REASONS.get(status, b"Error"),
            content_type.encode("latin-1"),
            len(body),
            b"" if keep_alive else b"Connection: close\r\n",
        )
        if len(body) < 65536:  # one write (one syscall) for the common small response
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        if not keep_alive:
            self.transport.close()
            return
        if not self.in_message:
            self.waiting_since = monotonic()
        if self.awaiting:
            self.awaiting = False
            self.answer_pipelined()


class WorkerServer:
    def __init__(
        self,
        config: ServingConfig,
        service: InferenceService | None,
        shared: SharedMetrics,
        slot: int,
        models: MultiModelHost | None = None,
    ):
        self.config = config
        self.service = service  # None on a multi-model endpoint, whose models are in ``models``
        self.batcher: Batcher | None = None
        self.models = models
        self.shared = shared
        self.metrics: WorkerMetrics = shared.slot(slot)
        self.max_payload = config.max_payload_bytes
        self.max_url_bytes = config.max_url_bytes
        self.max_headers = config.max_headers
        self.max_header_bytes = config.max_header_bytes
        # The largest head within the three limits: the request line, and each header's ": " and CRLF.
        self.max_head_bytes = config.max_url_bytes + config.max_header_bytes + 4 * config.max_headers + 64
        self.connections: set[HttpConnection] = set()
        # Each connection holds a file descriptor: stay clear of the process's limit, past which accept() would
        # fail for every client, /ping included.
        files, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.max_connections = (
            config.max_connections if files == resource.RLIM_INFINITY else min(config.max_connections, files - 64)
        )
        self.swept_at = monotonic()
        self.draining = False
        self.in_request = False
        self.listener: asyncio.AbstractServer | None = None
        self.listening_socket: socket.socket | None = None
        self.adopting: set[asyncio.Task] = set()  # connections taken from the listen backlog while draining
        self.cut_off = 0  # requests the drain deadline cut off
        self._ids = itertools.count(1)
        self._execution_parameters = json.dumps(config.execution_parameters).encode()

    def on_alarm(self, signum, frame):
        if self.in_request:
            raise RequestTimeout

    def reject_too_large(self, conn: HttpConnection) -> None:
        conn.respond(413, self._too_large_message(), TEXT, keep_alive=False)
        self.metrics.observe(ROUTE_INDEX["/invocations"], 413, 0.0)

    def make_room(self) -> bool:
        """At the connection cap: close the connection that has waited longest for its client, if one waits."""
        waiting = [conn for conn in self.connections if not conn.awaiting]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda conn: conn.waiting_since)
        oldest.transport.close()
        self.connections.discard(oldest)
        return True

    def close_stalled(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every second: close the connections whose clients let their timeout pass. A deadline counts once it
        passed before the previous sweep, so that a request read late, after a long prediction blocked the
        loop, is not cut."""
        cutoff, self.swept_at = self.swept_at, monotonic()
        config = self.config
        for conn in list(self.connections):
            if conn.awaiting:  # the server owes the answer: SAGEMAKER_MODEL_SERVER_TIMEOUT times it
                continue
            if conn.in_body:
                timeout, what = config.body_timeout, "body (MODELCRATE_BODY_TIMEOUT)"
            elif conn.in_message:
                timeout, what = config.header_timeout, "headers (MODELCRATE_HEADER_TIMEOUT)"
            else:
                timeout, what = config.keep_alive_timeout, None
            if conn.waiting_since + timeout >= cutoff:
                continue
            if what is None:  # idle between requests
                conn.transport.close()
            else:
                message = f"the request {what} did not arrive within {timeout:g} s\n"
                conn.respond(408, message.encode(), TEXT, keep_alive=False)
        loop.call_later(1.0, self.close_stalled, loop)

    def too_many_header_bytes(self) -> HttpError:
        return HttpError(f"the request headers exceed {self.max_header_bytes} bytes (MODELCRATE_MAX_HEADER_BYTES)", 431)

    def _too_large_message(self) -> bytes:
        return (
            f"request body exceeds the {self.max_payload // (1024 * 1024)} MiB limit "
            "(SAGEMAKER_MAX_PAYLOAD_IN_MB); split it into smaller requests\n"
        ).encode()

    def dispatch(
        self, conn: HttpConnection, method: bytes, url: bytes, headers: dict, body: bytes, keep_alive: bool
    ) -> None:
        started = time.perf_counter()
        path, _, query = url.partition(b"?")
        route = _PATHS.get(path, "other")
        if self.models is not None and (path == b"/models" or path.startswith(b"/models/")):
            route = "/models/{name}/invoke" if path.endswith(b"/invoke") else "/models"
        content_type = TEXT
        if route == "/invocations":
            if method != b"POST":
                status, payload = 405, b"use POST /invocations\n"
            elif conn.too_large:
                status, payload = 413, self._too_large_message()
            elif self.service is None:
                status, payload = 404, b"this is a multi-model endpoint: POST /models/<name>/invoke\n"
            elif self.batcher is not None:
                self.batcher.submit(conn, headers, body, started, keep_alive)
                return
            else:
                status, payload, content_type = self.invoke(self.service, headers, body)
        elif route.startswith("/models"):
            if conn.too_large:
                status, payload = 413, self._too_large_message()
            else:
                status, payload, content_type = self.models_request(method, path, query, headers, body)
        elif route == "other":
            status, payload = (
                404,
                b"not found: this server answers /ping, /invocations, /execution-parameters and /metrics\n",
            )
        elif method not in (b"GET", b"HEAD"):
            status, payload = 405, f"use GET {route}\n".encode()
        elif route == "/ping":
            status, payload = (503, b"shutting down\n") if self.draining else (200, b"")
        elif route == "/execution-parameters":
            status, payload, content_type = 200, self._execution_parameters, "application/json"
        else:
            status, payload, content_type = 200, self.shared.render(), "text/plain; version=0.0.4"
        if method == b"HEAD":
            payload = b""
        conn.respond(status, payload, content_type, keep_alive=keep_alive)
        self.metrics.observe(ROUTE_INDEX[route], status, time.perf_counter() - started)

    def finish(
        self, conn: HttpConnection, status: int, payload: bytes, content_type: str, started: float, keep_alive: bool
    ) -> None:
        """Answer an /invocations request, perhaps later than it came (batching)."""
        if not conn.transport.is_closing():  # a client may leave while its batch is predicted
            conn.respond(status, payload, content_type, keep_alive=keep_alive)
        self.metrics.observe(ROUTE_INDEX["/invocations"], status, time.perf_counter() - started)

    def models_request(
        self, method: bytes, path: bytes, query: bytes, headers: dict, body: bytes
    ) -> tuple[int, bytes, str]:
        """A multi-model endpoint's /models API; ``/models/<name>/invoke`` as /invocations for that model."""
        shown_path = path.decode("latin-1")
        try:
            segments = path.split(b"/")
            if len(segments) == 4 and segments[3] == b"invoke":
                if method != b"POST":
                    return 405, b"use POST /models/<name>/invoke\n", TEXT
                service = self.models.service(unquote(segments[2].decode("utf-8", "replace")))
                return self.invoke(service, headers, body)
            status, payload = self.models.manage(method, path, query, body)
            return status, payload, "application/json"
        except HttpError as exc:
            log.info("request refused", extra={"status": exc.status, "reason": exc.message, "path": shown_path})
            return exc.status, exc.message.encode() + b"\n", TEXT
        except Exception:
            log.exception("models request failed", extra={"path": shown_path})
            return 500, b"internal error while managing models; the container log has the details\n", TEXT

    def request_headers(self, headers: dict) -> tuple[str, str | None, str | None, str | None]:
        """(inference id, content type, accept, custom attributes) of an /invocations request."""
        content_type = headers.get(b"content-type")
        accept = headers.get(b"accept")
        attributes = headers.get(b"x-amzn-sagemaker-custom-attributes")
        inference_id = headers.get(b"x-amzn-sagemaker-inference-id")
        return (
            inference_id.decode("latin-1") if inference_id else f"{os.getpid()}-{next(self._ids)}",
            content_type.decode("latin-1") if content_type else None,
            accept.decode("latin-1") if accept else None,
            attributes.decode("latin-1") if attributes else None,
        )

    @contextlib.contextmanager
    def deadline(self):
        """SIGALRM raises RequestTimeout in the code inside, once SAGEMAKER_MODEL_SERVER_TIMEOUT has passed."""
        self.in_request = True
        signal.setitimer(signal.ITIMER_REAL, self.config.timeout)
        try:
            yield
        finally:
            self.in_request = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def error_answer(self, exc: BaseException, inference_id: str) -> tuple[int, bytes, str]:
        """The answer to a request that raised ``exc``."""
        if isinstance(exc, HttpError):
            log.info(
                "request refused",
                extra={"status": exc.status, "reason": exc.message, "inference_id": inference_id},
            )
            return exc.status, exc.message.encode() + b"\n", TEXT
        if isinstance(exc, RequestTimeout):
            log.error("request timed out", extra={"timeout_s": self.config.timeout, "inference_id": inference_id})
            return (
                504,
                (f"prediction took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT ({self.config.timeout:g} s)\n").encode(),
                TEXT,
            )
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: not the request's fault
            raise exc
        log.error("request failed", exc_info=exc, extra={"inference_id": inference_id})
        return (
            500,
            (f"internal error while answering request {inference_id}; the container log has the details\n").encode(),
            TEXT,
        )

    def invoke(self, service: InferenceService, headers: dict, body: bytes) -> tuple[int, bytes, str]:
        inference_id, content_type, accept, attributes = self.request_headers(headers)
        self.metrics.begin()
        try:
            with self.deadline():
                payload, response_type = service.invoke(body, content_type, accept, attributes, inference_id)
            return 200, payload, response_type
        except BaseException as exc:
            return self.error_answer(exc, inference_id)
        finally:
            self.metrics.end()

    def begin_drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        loop = asyncio.get_running_loop()
        if self.listener is not None:
            self.accept_backlog(loop)
            self.listener.close()  # a connection that comes later is refused, once every worker has drained
            self.listener = None
        log.info("draining: answering the requests already received")
        self.drain_step(loop, loop.time() + self.config.drain_timeout)

    def accept_backlog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Accept every connection the kernel completed for the listening socket: their clients may have sent
        their requests already."""
        for client in accept_backlog(self.listening_socket):
            adopting = loop.create_task(loop.connect_accepted_socket(lambda: HttpConnection(self), client))
            self.adopting.add(adopting)
            adopting.add_done_callback(self.adopting.discard)

    def drain_step(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Until every request received is answered, or the deadline: close the connections that owe nothing and
        have nothing unread. Publishes how many requests are still owed, for the supervisor."""
        for conn in list(self.connections):
            if (
                conn.owes_nothing()
                and not conn.transport.is_closing()
                and not has_unread_bytes(conn.transport.get_extra_info("socket"))
            ):
                conn.transport.close()
        # An open connection still owes an answer (or is still writing one).
        unanswered = len(self.adopting) + sum(1 + len(conn.pipelined) for conn in self.connections)
        self.metrics.set_unanswered(unanswered)
        if not unanswered:
            loop.stop()
        elif loop.time() > deadline:
            self.cut_off = unanswered
            loop.stop()
        else:
            loop.call_later(DRAIN_CHECK_SECONDS, self.drain_step, loop, deadline)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _keep_models_in_step(loop: asyncio.AbstractEventLoop, server: WorkerServer) -> None:
    """Every PRELOAD_SECONDS: load the models other workers loaded, drop those they unloaded."""
    if server.draining:
        return
    try:
        server.models.preload()
    except Exception:
        log.exception("cannot read the table of loaded models")
    loop.call_later(PRELOAD_SECONDS, _keep_models_in_step, loop, server)


def run_worker(
    config: ServingConfig,
    sock: socket.socket,
    shared: SharedMetrics,
    slot: int,
    table: ModelTable | None = None,
    drop_to: ServingUser | None = None,
    on_ready: Callable[[dict], None] | None = None,
) -> int:
    """Load the model (none yet on a multi-model endpoint), become ``drop_to`` (when started as root) and serve
    until SIGTERM; returns when drained: the number of requests the drain deadline cut off. ``on_ready`` gets
    the model's description once the worker accepts requests."""
    if config.multi_model:
        service, models = None, MultiModelHost(config, table)
    else:
        if slot > 0:
            # The first worker logs what it found about the model's files; the others load the very same files.
            trust.log.setLevel(logging.ERROR)
        service, models = InferenceService.load(config), None
        service.warm_up()
    if drop_to is not None:
        if service is not None and service.predictor is not None:
            service.predictor.read_remaining_files()  # the model directory may be readable by root only
        drop_privileges(drop_to)
    loop = _new_event_loop()
    asyncio.set_event_loop(loop)
    server = WorkerServer(config, service, shared, slot, models)
    server.listening_socket = sock
    if service is not None and service.batchable and config.batching != "off":
        server.batcher = Batcher(server, service, config, loop)
    # Until now SIGTERM ends the worker at once, which loses nothing. From the first connection it accepts
    # (create_server already accepts), SIGTERM must drain instead: held back until its handler is in place.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server.listener = loop.run_until_complete(
        loop.create_server(lambda: HttpConnection(server), sock=sock, backlog=2048)
    )
    for signum in stop_signals:
        loop.add_signal_handler(signum, server.begin_drain)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    signal.signal(signal.SIGALRM, server.on_alarm)
    if models is not None:
        _keep_models_in_step(loop, server)
    server.close_stalled(loop)
    server.metrics.set_ready(True)
    described = service.predictor.describe() if service and service.predictor else {}
    log.info("worker ready", extra={"worker": slot, "multi_model": config.multi_model, **described})
    if on_ready is not None:
        on_ready(described)
    try:
        loop.run_forever()
    finally:
        server.metrics.set_ready(False)
        loop.close()
    return server.cut_off
