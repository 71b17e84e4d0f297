"""The pipeline's front server: one endpoint that answers like a single container.

Serial mode passes each container's response body to the next; Direct mode sends the request to the
container named in ``X-Amzn-SageMaker-Target-Container-Hostname``. One asyncio event loop does all the
work (no thread per request) and keeps HTTP/1.1 connections to the containers open between requests, so
a hop costs one write and one read on an open socket. Parsing is httptools', as in the serving runtime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

from modelcrate.serving.config import DRAIN_TIMEOUT
from modelcrate.serving.draining import accept_backlog, has_unread_bytes

log = logging.getLogger("modelcrate.pipeline")

TEXT = b"text/plain; charset=utf-8"
MAX_BODY_BYTES = 100 * 1024 * 1024  # SageMaker's largest batch payload; each container applies its own limit
PING_TIMEOUT_S = 2.0  # SageMaker's budget for one /ping answer
PARAMETERS_TIMEOUT_S = 30.0
DRAIN_CHECK_S = 0.05
MESSAGE_LIMIT = 500  # longest container error message quoted back to the caller
READ_SIZE = 256 * 1024

TARGET_HEADER = b"x-amzn-sagemaker-target-container-hostname"
CUSTOM_ATTRIBUTES = b"x-amzn-sagemaker-custom-attributes"
INFERENCE_ID = b"x-amzn-sagemaker-inference-id"
# Passed to every container: the caller's attributes are opaque to the pipeline, and one inference id lets
# the containers' logs be read together.
PASSED_ALONG = (CUSTOM_ATTRIBUTES, INFERENCE_ID, b"x-amzn-sagemaker-target-model", b"x-amzn-sagemaker-target-variant")
# Both spellings are in use: the contract's MULTI_RECORD and the SageMaker Python SDK's MultiRecord.
BATCH_STRATEGIES = {
    "MULTI_RECORD": "MULTI_RECORD",
    "MULTIRECORD": "MULTI_RECORD",
    "SINGLE_RECORD": "SINGLE_RECORD",
    "SINGLERECORD": "SINGLE_RECORD",
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: bytes = TEXT
    custom_attributes: bytes | None = None


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class StaleConnection(ConnectionError):
    """A kept-alive connection the container had already closed; the request is sent again on a new one."""


class _ResponseReader:
    """httptools callbacks collecting one response."""

    def __init__(self):
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.status = 0
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes):
        self.headers[name.lower()] = value

    def on_headers_complete(self):
        self.headers_done = True
        self.status = self.parser.get_status_code()

    def on_body(self, chunk: bytes):
        self.chunks.append(chunk)

    def on_message_complete(self):
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # the parser forgets it once the message is done

    def ends_at_close(self) -> bool:
        """A response without a length is complete when the server closes the connection."""
        return self.headers_done and b"content-length" not in self.headers and b"transfer-encoding" not in self.headers


class ContainerClient:
    """Keep-alive HTTP/1.1 connections to one container on 127.0.0.1."""

    def __init__(self, hostname: str, position: int, count: int, port: int):
        self.hostname = hostname
        self.label = f"container {hostname!r} ({position} of {count})"
        self.port = port
        self._host = f"127.0.0.1:{port}".encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self, method: bytes, path: bytes, body: bytes = b"", headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> UpstreamResponse:
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            method,
            path,
            self._host,
            len(body),
            b"".join(b"%s: %s\r\n" % header for header in headers),
        )
        while self._idle:
            try:
                return await self._exchange(self._idle.pop(), head, body, reused=True)
            except StaleConnection:
                continue
        connection = await asyncio.open_connection("127.0.0.1", self.port)
        connection[1].get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await self._exchange(connection, head, body, reused=False)

    async def _exchange(self, connection, head: bytes, body: bytes, reused: bool) -> UpstreamResponse:
        reader, writer = connection
        response = _ResponseReader()
        received = False
        try:
            if len(body) > 65536:
                writer.writelines((head, body))  # no copy of a large body
            else:
                writer.write(head + body)  # one syscall for the common small request
            await writer.drain()
            while not response.complete:
                data = await reader.read(READ_SIZE)
                if not data:
                    if response.ends_at_close():
                        break
                    if reused and not received:
                        raise StaleConnection("closed while idle")
                    raise ConnectionResetError("the container closed the connection before answering")
                received = True
                response.parser.feed_data(data)
        except ConnectionError as exc:
            writer.close()
            if reused and not received and not isinstance(exc, StaleConnection):
                raise StaleConnection(str(exc)) from exc
            raise
        except BaseException:  # a timeout or a parse error leaves the connection mid-response: never reuse it
            writer.close()
            raise
        if response.keep_alive:
            self._idle.append(connection)
        else:
            writer.close()
        return UpstreamResponse(response.status, response.headers, b"".join(response.chunks))

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()


@dataclass
class _Request:
    method: bytes = b""
    url: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    too_large: bool = False
    keep_alive: bool = True


class _RequestReader:
    """httptools callbacks collecting the requests of one client connection, in order."""

    def __init__(self, transport: asyncio.Transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.completed: deque[_Request] = deque()
        self.current = _Request()
        self.chunks: list[bytes] = []
        self.size = 0
        self.in_message = False  # a request partly received
        self.rejected = False  # answered early (413 before the body): the connection ends

    def on_message_begin(self):
        self.in_message = True
        self.current = _Request()
        self.chunks = []
        self.size = 0

    def on_url(self, url: bytes):
        self.current.url += url

    def on_header(self, name: bytes, value: bytes):
        self.current.headers[name.lower()] = value

    def on_headers_complete(self):
        length = self.current.headers.get(b"content-length", b"")
        expects_continue = self.current.headers.get(b"expect", b"").lower() == b"100-continue"
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            self.current.too_large = True
            if expects_continue:  # the client has not sent the body yet: refuse it before it does
                self.transport.write(_encode(_too_large(), keep_alive=False, head_only=False))
                self.rejected = True
        elif expects_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # clients wait for it before sending large bodies

    def on_body(self, chunk: bytes):
        self.size += len(chunk)
        if self.size > MAX_BODY_BYTES:
            self.current.too_large = True
            self.chunks = []  # read and drop the rest, so that the client still gets its 413
        elif not self.current.too_large:
            self.chunks.append(chunk)

    def on_message_complete(self):
        request = self.current
        request.method = self.parser.get_method()
        request.body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        request.keep_alive = self.parser.should_keep_alive()
        self.completed.append(request)
        self.in_message = False


def _encode(reply: Reply, keep_alive: bool, head_only: bool) -> bytes:
    try:
        reason = HTTPStatus(reply.status).phrase.encode()
    except ValueError:
        reason = b"Unknown"
    body = b"" if head_only else reply.body
    extra = b"X-Amzn-SageMaker-Custom-Attributes: %s\r\n" % reply.custom_attributes if reply.custom_attributes else b""
    if not keep_alive:
        extra += b"Connection: close\r\n"
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        reply.status,
        reason,
        reply.content_type,
        len(reply.body),
        extra,
    )
    return head + body


def _text(message: str, status: int) -> Reply:
    return Reply(status, message.encode() + b"\n")


def _too_large() -> Reply:
    return _text(f"request body exceeds {MAX_BODY_BYTES // (1024 * 1024)} MiB; send smaller requests", 413)


def _container_message(response: UpstreamResponse) -> str:
    message = response.body.decode("utf-8", "replace").strip()
    if not message:
        try:
            return HTTPStatus(response.status).phrase
        except ValueError:
            return "no message"
    return message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + "..."


def combine_execution_parameters(answers: Sequence[dict]) -> dict | None:
    """The most restrictive of the containers' answers: in Serial mode every request goes through every
    container, and in Direct mode any of them may get it, so a request must suit each one (None when no
    container answered)."""
    concurrency, payloads, strategies = [], [], []
    for answer in answers:
        value = answer.get("MaxConcurrentTransforms")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            concurrency.append(value)
        value = answer.get("MaxPayloadInMB")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            payloads.append(value)
        value = answer.get("BatchStrategy")
        if isinstance(value, str) and value.upper() in BATCH_STRATEGIES:
            strategies.append(BATCH_STRATEGIES[value.upper()])
    if not (concurrency or payloads or strategies):
        return None
    combined: dict = {}
    if concurrency:
        combined["MaxConcurrentTransforms"] = min(concurrency)
    if strategies:
        combined["BatchStrategy"] = "SINGLE_RECORD" if "SINGLE_RECORD" in strategies else "MULTI_RECORD"
    if payloads:
        # 0 means "whole objects, streamed": no limit of its own, so it yields to any container that has one.
        limited = [p for p in payloads if p > 0]
        combined["MaxPayloadInMB"] = min(limited) if limited else 0
    return combined


class _ClientConnection(asyncio.Protocol):
    """One client connection. Its bytes are parsed as they arrive, so that a drain knows exactly what each
    connection has received; one task answers the requests in order."""

    def __init__(self, front: FrontServer):
        self.front = front
        self.arrived = asyncio.Event()
        self.answering_one = False
        self.client_done = False  # the client ended its side of the connection

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.socket = transport.get_extra_info("socket")
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests = _RequestReader(transport)
        self.front.connections.add(self)
        self.answering = asyncio.get_running_loop().create_task(self._answer_in_order())

    def data_received(self, data: bytes) -> None:
        try:
            self.requests.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_encode(_text("malformed HTTP request", 400), keep_alive=False, head_only=False))
            self.transport.close()
            return
        if self.requests.rejected:
            self.transport.close()
        elif self.requests.completed:
            self.transport.pause_reading()  # read on once these are answered
            self.arrived.set()

    def eof_received(self) -> bool:
        # A client may end its side once it has sent its requests: it still gets the answers to those it completed.
        self.client_done = True
        return bool(self.requests.completed or self.answering_one)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        self.arrived.set()  # the answering task ends

    def owed(self) -> int:
        """Requests received (or partly received) and not answered yet."""
        return len(self.requests.completed) + self.answering_one + self.requests.in_message

    def received_more(self) -> bool:
        return bool(self.owed()) or has_unread_bytes(self.socket)

    async def _answer_in_order(self) -> None:
        while not self.transport.is_closing():
            await self.arrived.wait()
            self.arrived.clear()
            while self.requests.completed and not self.transport.is_closing():
                request = self.requests.completed.popleft()
                self.answering_one = True
                try:
                    reply = await self.front.answer(request)
                finally:
                    self.answering_one = False
                if self.transport.is_closing():  # the client left while its request went through the chain
                    return
                # Stopping, the last request received on this connection is answered with Connection: close.
                keep_alive = request.keep_alive and not (self.front.closing and not self.received_more())
                self.transport.write(_encode(reply, keep_alive, head_only=request.method == b"HEAD"))
                if not keep_alive:
                    self.transport.close()
            if self.client_done and not self.requests.completed:
                self.transport.close()
            elif not self.transport.is_closing():
                self.transport.resume_reading()


class FrontServer:
    """Answers /invocations, /ping and /execution-parameters for the whole pipeline."""

    def __init__(
        self,
        containers: Sequence[tuple[str, int]],
        mode: str,
        invocation_timeout: float,
        drain_timeout: float = DRAIN_TIMEOUT,
    ):
        count = len(containers)
        self.clients = [
            ContainerClient(hostname, position, count, port)
            for position, (hostname, port) in enumerate(containers, start=1)
        ]
        self.by_hostname = {client.hostname.encode(): client for client in self.clients}
        self.direct = mode == "Direct"
        self.invocation_timeout = invocation_timeout
        self.drain_timeout = drain_timeout
        self._server: asyncio.AbstractServer | None = None
        self._listening_socket: socket.socket | None = None
        self.connections: set[_ClientConnection] = set()
        self.closing = False

    async def start(self, sock: socket.socket) -> None:
        self._listening_socket = sock
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientConnection(self), sock=sock, backlog=2048)

    async def close(self) -> int:
        """Stop accepting, answer every request already received (each connection's last with Connection:
        close) and close the connections; returns how many requests the drain deadline cut off."""
        self.closing = True
        loop = asyncio.get_running_loop()
        if self._server is not None:
            backlog = accept_backlog(self._listening_socket)
            self._server.close()  # closes the listening socket: a later connection is refused
            for client in backlog:
                await loop.connect_accepted_socket(lambda: _ClientConnection(self), client)
        deadline = loop.time() + self.drain_timeout
        while self.connections and loop.time() < deadline:
            for connection in list(self.connections):
                if not connection.received_more() and not connection.transport.is_closing():
                    connection.transport.close()  # owes nothing
            await asyncio.sleep(DRAIN_CHECK_S)
        # An open connection owes at least the request it holds unread.
        cut_off = sum(max(connection.owed(), 1) for connection in self.connections)
        late = [connection.answering for connection in self.connections]
        for connection in list(self.connections):
            connection.transport.abort()
            connection.answering.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for client in self.clients:
            client.close()
        return cut_off

    async def answer(self, request: _Request) -> Reply:
        path = request.url.split(b"?", 1)[0]
        if path == b"/invocations":
            if request.method != b"POST":
                return _text("use POST /invocations", 405)
            if request.too_large:
                return _too_large()
            return await self._invoke(request)
        if path not in (b"/ping", b"/execution-parameters"):
            return _text("not found: this pipeline answers /ping, /invocations and /execution-parameters", 404)
        if request.method not in (b"GET", b"HEAD"):
            return _text(f"use GET {path.decode()}", 405)
        return await (self._ping() if path == b"/ping" else self._execution_parameters())

    # ---- /invocations ----

    async def _invoke(self, request: _Request) -> Reply:
        headers = request.headers
        target = headers.get(TARGET_HEADER)
        if self.direct:
            known = ", ".join(client.hostname for client in self.clients)
            if target is None:
                return _text(
                    "this pipeline runs in Direct mode: name the container in "
                    f"X-Amzn-SageMaker-Target-Container-Hostname (one of: {known})",
                    400,
                )
            client = self.by_hostname.get(target)
            if client is None:
                name = target.decode("latin-1")
                return _text(f"no container has the hostname {name!r}; this pipeline's containers: {known}", 404)
            chain = [client]
        elif target is not None:
            return _text(
                "X-Amzn-SageMaker-Target-Container-Hostname only applies in Direct mode; this pipeline runs in "
                "Serial mode (InferenceExecutionConfig Mode), so send the request without it",
                400,
            )
        else:
            chain = self.clients

        passed = [(name, headers[name]) for name in PASSED_ALONG if name in headers]
        if INFERENCE_ID not in headers:
            passed.append((INFERENCE_ID, uuid.uuid4().hex.encode()))
        content_type = headers.get(b"content-type")
        accept = headers.get(b"accept")
        body = request.body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.invocation_timeout
        last = len(chain) - 1
        response = None
        for index, client in enumerate(chain):
            # The caller's Accept goes to the last container only: the others answer in their
            # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, which is what the next container reads.
            hop = [*passed]
            if content_type:
                hop.append((b"content-type", content_type))
            if index == last and accept:
                hop.append((b"accept", accept))
            try:
                response = await asyncio.wait_for(
                    client.request(b"POST", b"/invocations", body, hop), max(deadline - loop.time(), 0.001)
                )
            except asyncio.TimeoutError:
                log.warning("%s did not answer within %g s", client.label, self.invocation_timeout)
                return _text(
                    f"{client.label} did not answer within the pipeline's {self.invocation_timeout:g} s "
                    "invocation timeout",
                    504,
                )
            except (OSError, httptools.HttpParserError) as exc:
                log.warning("%s failed: %s", client.label, exc)
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                return _text(f"{client.label} is not answering ({reason}); see its log", 502)
            if not 200 <= response.status < 300:
                return _text(
                    f"{client.label} answered {response.status}: {_container_message(response)}", response.status
                )
            body = response.body
            content_type = response.headers.get(b"content-type")
        return Reply(
            200,
            body,
            content_type or b"application/octet-stream",
            response.headers.get(CUSTOM_ATTRIBUTES),
        )

    # ---- /ping and /execution-parameters ----

    async def _ask_all(self, path: bytes, timeout: float) -> list[UpstreamResponse | str]:
        """Each container's answer, or why there is none."""

        async def ask(client: ContainerClient) -> UpstreamResponse | str:
            try:
                return await asyncio.wait_for(client.request(b"GET", path), timeout)
            except asyncio.TimeoutError:
                return f"no answer within {timeout:g} s"
            except (OSError, httptools.HttpParserError) as exc:
                return f"not answering: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"

        return await asyncio.gather(*(ask(client) for client in self.clients))

    async def _ping(self) -> Reply:
        if self.closing:
            return _text("shutting down", 503)
        answers = await self._ask_all(b"/ping", PING_TIMEOUT_S)
        unhealthy = [
            f"{client.hostname} ({answer if isinstance(answer, str) else f'/ping answered {answer.status}'})"
            for client, answer in zip(self.clients, answers, strict=True)
            if isinstance(answer, str) or answer.status != 200
        ]
        if unhealthy:
            return _text(f"unhealthy container(s): {', '.join(unhealthy)}", 503)
        return Reply(200, b"")

    async def _execution_parameters(self) -> Reply:
        answers = []
        for answer in await self._ask_all(b"/execution-parameters", PARAMETERS_TIMEOUT_S):
            if isinstance(answer, UpstreamResponse) and answer.status == 200:
                try:
                    parsed = json.loads(answer.body)
                except ValueError:
                    continue
                if isinstance(parsed, dict):
                    answers.append(parsed)
        combined = combine_execution_parameters(answers)
        if combined is None:
            return _text("none of the pipeline's containers answers /execution-parameters", 404)
        return Reply(200, json.dumps(combined).encode(), b"application/json")
