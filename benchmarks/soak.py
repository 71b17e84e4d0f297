"""Soak benchmark: ``serve`` under mixed valid and hostile traffic (issue 13).

    .venv/bin/python benchmarks/soak.py [--seconds SECONDS] [--model xgboost|sklearn]

Three phases, each on a freshly started ``serve`` with 2 workers and the default limits: valid 1-row CSV
requests only for half of --seconds (the baseline); the same valid requests for --seconds while hostile
clients attack (oversized heads and URLs, slowloris, idle connection floods, unknown transfer codings,
numeric and NPY size tricks, malformed and oversize bodies, pipelined garbage, resets); valid requests only
for the other half (the baseline again, so that drifting load on a shared machine weighs on both sides). A
prober asks /ping every 100 ms throughout. Reported: every hostile answer by attack and status, the valid
requests' p50/p99 per phase and the attacked p99 over the baseline's, each worker's RSS growth, and /ping
latency, with PASS/FAIL per acceptance target; the exit code is 1 if any target fails. The report goes to
benchmarks/results/soak.md and to stdout, progress to stderr. Traffic goes to 127.0.0.1 only, and every
process started here is stopped before exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import http.client
import itertools
import json
import multiprocessing
import os
import re
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from modelcrate.scaffold.sample_models import abalone_dataset, create_sample_model
from serving import (
    CLOCK_TICKS,
    HOST,
    MODELS,
    BenchmarkError,
    OtherCpu,
    RunningServer,
    cpu_ticks,
    csv_body,
    load_average,
    machine_table,
    peak_rss_mb,
    progress,
    running_server,
    source_revision,
    table,
    wait_until_healthy,
    wait_until_workers_loaded,
)

REPORT_PATH = Path(__file__).resolve().parent / "results" / "soak.md"
WORKERS = 2
MIB = 1024 * 1024

# Valid traffic: wrk, 16 connections that each pause 20 ms between requests (at most 800 req/s, a fraction of
# what 2 workers answer). Below saturation a p99 shows what the attacks cost valid requests; a saturating
# load would mostly measure how much CPU the attacking process takes from the server on a small machine.
VALID_THREADS = 2
VALID_CONNECTIONS = 16
VALID_PAUSE_MS = 20
WRK_TIMEOUT_SECONDS = 10  # wrk leaves requests slower than its timeout out of its latencies: count them instead
WARMUP_SECONDS = 5  # of valid traffic on a fresh server, before the RSS baseline is read
RSS_SETTLE_SECONDS = 2.0  # after the traffic: bodies still in flight at the end are not growth

PING_EVERY_SECONDS = 0.1
PING_TIMEOUT_SECONDS = 5.0  # longer than the target, so that a slow answer is measured rather than cut

# Hostile traffic.
ATTACKERS = 4  # concurrent loops through the short attacks
ATTACK_PAUSE_SECONDS = 0.05  # each loop, between two attacks
IDLE_CONNECTIONS = 400  # opened at the start, held without a byte sent
SLOW_HEADS = 30  # concurrent half-sent heads, a header line every 2 s: 408 after the 20 s header timeout
SLOW_BODIES = 20  # concurrent bodies sent a byte a second: 408 after the 60 s body timeout
SLOW_VALID_BODIES = 5  # concurrent valid bodies sent in 10 pieces a second apart: answered 200
ANSWER_WITHIN_SECONDS = 30.0  # a short attack still unanswered after this counts as unanswered
GRACE_SECONDS = 8.0  # after the phase, for answers still owed (a slow body's 408 comes at 60 s plus a sweep)

# Acceptance targets.
MAX_RSS_GROWTH_MB = 10.0
MAX_PING_SECONDS = 1.0
MAX_P99_RATIO = 2.0

# Outcomes of a hostile connection that carry no HTTP status.
CLOSED_BY_SERVER = "closed by the server, no answer"
RESET_BY_SERVER = "reset by the server, no answer"
CLOSED_BY_CLIENT = "closed by the client (by design)"
RESET_BY_CLIENT = "reset by the client (by design)"
HELD_OPEN = "still open at the end"
UNFINISHED = "unanswered at the end (given up)"
UNANSWERED = f"no answer within {ANSWER_WITHIN_SECONDS:g} s"
UNPARSABLE = "unparsable answer"
CONNECT_FAILED = "connect failed"

# wrk POSTs the file named by SOAK_BODY_FILE, each connection pausing SOAK_PAUSE_MS between requests. Every
# thread counts its non-200 and 5xx answers; done() adds them up and prints one JSON line for run_valid.
VALID_WRK_SCRIPT = """\
local file = assert(io.open(os.getenv("SOAK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "text/csv"
local pause_ms = tonumber(os.getenv("SOAK_PAUSE_MS"))
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  not_ok = 0
  server_errors = 0
end

function delay()
  return pause_ms
end

function response(status, headers, body)
  if status ~= 200 then not_ok = not_ok + 1 end
  if status >= 500 then server_errors = server_errors + 1 end
end

function done(summary, latency, requests)
  local not_ok, server_errors = 0, 0
  for _, thread in ipairs(threads) do
    not_ok = not_ok + thread:get("not_ok")
    server_errors = server_errors + thread:get("server_errors")
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "requests_per_second": %.2f, '
    .. '"socket_errors": %d, "timeouts": %d, "not_ok": %d, "server_errors": %d}\\n',
    summary.requests, latency:percentile(50), latency:percentile(99), latency.max,
    summary.requests / (summary.duration / 1e6), errors.connect + errors.read + errors.write, errors.timeout,
    not_ok, server_errors))
end
"""


# ---- hostile traffic (runs in a process of its own) ----------------------------------------------------

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


def answer_statuses(received: bytes) -> list[str]:
    """The status of every response in ``received``, in order (several when requests were pipelined)."""
    statuses, at = [], 0
    while at < len(received):
        status = STATUS_LINE.match(received, at)
        head_end = received.find(b"\r\n\r\n", at)
        if not status or head_end < 0:
            return [*statuses, UNPARSABLE]
        length = CONTENT_LENGTH.search(received, at, head_end + 2)
        statuses.append(status[1].decode())
        at = head_end + 4 + (int(length[1]) if length else 0)
    return statuses


def connection_outcome(received: bytes) -> str:
    """What the server sent on one connection, in order, e.g. "200 then 400" or "50 x 200"."""
    runs = [(status, len(list(same))) for status, same in itertools.groupby(answer_statuses(received))]
    return " then ".join(status if times == 1 else f"{times} x {status}" for status, times in runs)


def answers_in(outcome: str) -> list[tuple[str, int]]:
    """(status, how many) of each HTTP answer in a connection's outcome; none for "closed by ..." and the like."""
    answers = []
    for part in outcome.split(" then "):
        times, _, status = part.rpartition(" x ")
        if status.isdigit():
            answers.append((status, int(times or 1)))
    return answers


async def connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


async def send(sock: socket.socket, *parts: bytes) -> bool:
    """False once the server stopped reading: it answered early, or closed the connection."""
    loop = asyncio.get_running_loop()
    try:
        for part in parts:
            await loop.sock_sendall(sock, part)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


async def outcome_when_closed(sock: socket.socket) -> str:
    loop = asyncio.get_running_loop()
    received, reset = bytearray(), False
    try:
        while chunk := await loop.sock_recv(sock, 65536):
            received += chunk
    except ConnectionResetError:
        reset = True  # the server closed with our unread bytes queued; whatever it answered first still counts
    if received:
        return connection_outcome(bytes(received))
    return RESET_BY_SERVER if reset else CLOSED_BY_SERVER


async def ask(port: int, *parts: bytes) -> str:
    """Send ``parts`` (the server may stop reading part-way) and read every answer until the server closes."""
    sock = await connect(port)
    try:
        await send(sock, *parts)
        return await outcome_when_closed(sock)
    finally:
        sock.close()


async def abandon(port: int, *parts: bytes, reset: bool) -> str:
    """Send ``parts``, then close the connection; with ``reset``, abruptly (an RST, no FIN)."""
    sock = await connect(port)
    await send(sock, *parts)
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return RESET_BY_CLIENT if reset else CLOSED_BY_CLIENT


async def trickle(port: int, head: bytes, pieces: list[bytes], interval: float) -> str:
    """Send ``head``, then one of ``pieces`` every ``interval`` seconds, until the server answers or closes."""
    sock = await connect(port)

    async def drip() -> None:
        for piece in pieces:
            await asyncio.sleep(interval)
            if not await send(sock, piece):
                return

    dripping = asyncio.create_task(drip())
    try:
        await send(sock, head)
        return await outcome_when_closed(sock)
    finally:
        dripping.cancel()
        sock.close()


def in_pieces(data: bytes, size: int = 65536) -> list[bytes]:
    """Sent piece by piece, a refused request stops early instead of pushing all of ``data`` first."""
    view = memoryview(data)
    return [view[at : at + size] for at in range(0, len(data), size)]


def npy_declaring(shape: tuple) -> bytes:
    """An NPY header declaring ``shape`` over a body of 80 bytes."""
    header = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(80)


def post(body: bytes, content_type: bytes = b"text/csv", extra: bytes = b"") -> bytes:
    return (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
        b"%s\r\n%s" % (content_type, len(body), extra, body)
    )


def get_ping(target: bytes = b"/ping", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (target, extra)


def chunked(data: bytes, size: int = 65536) -> list[bytes]:
    return [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in in_pieces(data, size)] + [b"0\r\n\r\n"]


@dataclass(frozen=True)
class Attack:
    name: str
    expected: frozenset[str]  # the connection outcomes the limits of issue 13 call for
    run: Callable[[int], Awaitable[str]]
    answer_within: float | None = ANSWER_WITHIN_SECONDS  # None: waits on the server's timeouts, up to the end


def expect(*outcomes: str) -> frozenset[str]:
    return frozenset(outcomes)


def short_attacks(row: bytes) -> list[Attack]:
    """Attacks that get their answer (or are dropped) at once; ``row`` is one valid CSV record."""
    oversize = row * (7 * MIB // len(row) + 1)  # past the 6 MiB realtime limit
    unique = itertools.count()
    csv_head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/csv\r\n"

    def unique_long_headers(port: int) -> Awaitable[str]:
        # Unique values of every header the runtime parses: a cache keyed on them would grow with each one.
        i, filler = next(unique), b"z" * 4000
        extra = b"Accept: application/json, application/x-%d%s\r\nX-Amzn-SageMaker-Custom-Attributes: note=%d%s\r\n" % (
            i,
            filler,
            i,
            filler,
        )
        return ask(port, post(row, b"text/csv; note=%d%s" % (i, filler), extra))

    closed = expect(CLOSED_BY_SERVER, RESET_BY_SERVER)
    return [
        Attack(
            "a 16.5 KiB header (just over 16 KiB)",
            expect("431"),
            lambda p: ask(p, get_ping(extra=b"X-Big: " + b"a" * 16_900 + b"\r\n")),
        ),
        Attack(
            "an 8 MiB header (far over)",
            expect("431") | closed,
            lambda p: ask(p, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ", *in_pieces(b"a" * 8 * MIB), b"\r\n\r\n"),
        ),
        Attack(
            "200 headers",
            expect("431"),
            lambda p: ask(p, get_ping(extra=b"".join(b"X-H%d: v\r\n" % i for i in range(200)))),
        ),
        Attack(
            "40 headers of 1 KiB",
            expect("431"),
            lambda p: ask(p, get_ping(extra=b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1024) for i in range(40)))),
        ),
        Attack("a URL of 8 KiB + 1", expect("414"), lambda p: ask(p, get_ping(b"/ping?" + b"q" * (8 * 1024 - 5)))),
        Attack(
            "a URL of 1 MiB", expect("414") | closed, lambda p: ask(p, *in_pieces(get_ping(b"/ping?" + b"q" * MIB)))
        ),
        Attack("unique 4 KB Content-Type, Accept and custom attributes", expect("200"), unique_long_headers),
        Attack(
            "Transfer-Encoding: gzip, chunked",
            expect("501"),
            lambda p: ask(p, csv_head + b"Transfer-Encoding: gzip, chunked\r\n\r\n", *chunked(row)),
        ),
        Attack(
            "Transfer-Encoding: gzip, then chunked",
            expect("501"),
            lambda p: ask(
                p, csv_head + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", *chunked(row)
            ),
        ),
        Attack(
            "a chunk size that is not hex",
            expect("400"),
            lambda p: ask(p, csv_head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + row + b"\r\n0\r\n\r\n"),
        ),
        Attack(
            "Transfer-Encoding and Content-Length together",
            expect("400"),
            lambda p: ask(p, csv_head + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", *chunked(row)),
        ),
        Attack(
            "Content-Length of 23 digits",
            expect("400", "413"),
            lambda p: ask(p, csv_head + b"Content-Length: 99999999999999999999999\r\n\r\n" + row),
        ),
        Attack(
            "a JSON integer of 5,000 digits",
            expect("400"),
            lambda p: ask(p, post(b"[[" + b"7" * 5000 + b",0,0,0,0,0,0,0,0,0]]", b"application/json")),
        ),
        Attack(
            "JSON 1e400",
            expect("400"),
            lambda p: ask(p, post(b"[[1" + b"0" * 400 + b",0,0,0,0,0,0,0,0,0]]", b"application/json")),
        ),
        Attack(
            "JSON Lines 1e400",
            expect("400"),
            lambda p: ask(
                p, post(b'{"instances": [[1' + b"0" * 400 + b",0,0,0,0,0,0,0,0,0]]}\n", b"application/jsonlines")
            ),
        ),
        Attack(
            "NPY declaring shape (10^12, 10)",
            expect("400"),
            lambda p: ask(p, post(npy_declaring((10**12, 10)), b"application/x-npy")),
        ),
        Attack(
            "NPY declaring shape (2^62, 2^62)",
            expect("400"),
            lambda p: ask(p, post(npy_declaring((2**62, 2**62)), b"application/x-npy")),
        ),
        Attack(
            "CSV 1e39 (past float32)", expect("400", "200"), lambda p: ask(p, post(b"1e39," + row.partition(b",")[2]))
        ),
        Attack("CSV of words", expect("400"), lambda p: ask(p, post(b"abalone,shell,rings\nx,y,z\n"))),
        Attack("CSV with ragged rows", expect("400"), lambda p: ask(p, post(row + b"1,2\n" + row))),
        Attack("CSV of binary garbage", expect("400"), lambda p: ask(p, post(bytes(range(256)) * 4))),
        Attack(
            "a 7 MiB body (Content-Length)",
            expect("413"),
            lambda p: ask(p, csv_head + b"Content-Length: %d\r\n\r\n" % len(oversize), *in_pieces(oversize)),
        ),
        Attack(
            "a 7 MiB chunked body",
            expect("413"),
            lambda p: ask(p, csv_head + b"Transfer-Encoding: chunked\r\n\r\n", *chunked(oversize)),
        ),
        Attack(
            "Content-Length 7 MiB with Expect: 100-continue",
            expect("413"),
            lambda p: ask(p, csv_head + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(oversize)),
        ),
        Attack(
            "Content-Length 10^12, 64 KiB sent, then closed",
            expect(CLOSED_BY_CLIENT),
            lambda p: abandon(p, csv_head + b"Content-Length: 1000000000000\r\n\r\n", oversize[:65536], reset=False),
        ),
        Attack(
            "a valid request, then pipelined binary garbage",
            expect("200 then 400"),
            lambda p: ask(
                p,
                post(row).replace(b"Connection: close\r\n", b"")
                + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                + bytes(range(64))
                + b"\r\n\r\n",
            ),
        ),
        Attack(
            "50 pipelined /ping requests",
            expect("50 x 200"),
            lambda p: ask(p, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" * 49 + get_ping()),
        ),
        Attack("a garbage request line", expect("400"), lambda p: ask(p, b"GARBAGE /\x00\x01 HTTP/9.9\r\n\r\n")),
        Attack(
            "reset half-way through a body",
            expect(RESET_BY_CLIENT),
            lambda p: abandon(p, csv_head + b"Content-Length: 1000\r\n\r\n", b"0," * 250, reset=True),
        ),
        Attack(
            "reset half-way through a head",
            expect(RESET_BY_CLIENT),
            lambda p: abandon(p, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le", reset=True),
        ),
    ]


def slow_attacks(row: bytes) -> list[tuple[Attack, int]]:
    """Attacks that hold their connection for many seconds, each with how many of it run at once."""
    ping_head = b"GET /ping HTTP/1.1\r\nHost: x\r\n"
    body_head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/csv\r\n"
    row_pieces = in_pieces(row, -(-len(row) // 10))
    return [
        (
            Attack(
                "slowloris: a head sent a header line every 2 s",
                expect("408"),
                lambda p: trickle(p, ping_head, [b"X-Slow: 1\r\n"] * 1000, 2.0),
                answer_within=None,
            ),
            SLOW_HEADS,
        ),
        (
            Attack(
                "a 1000-byte body sent a byte a second",
                expect("408"),
                lambda p: trickle(p, body_head + b"Content-Length: 1000\r\n\r\n", [b"0"] * 1000, 1.0),
                answer_within=None,
            ),
            SLOW_BODIES,
        ),
        (
            Attack(
                "a valid body sent in 10 pieces a second apart",
                expect("200"),
                lambda p: trickle(p, body_head + b"Content-Length: %d\r\n\r\n" % len(row), row_pieces, 1.0),
                answer_within=None,
            ),
            SLOW_VALID_BODIES,
        ),
    ]


IDLE_ATTACK = f"{IDLE_CONNECTIONS} idle connections, opened at the start, no byte sent"
IDLE_EXPECTED = expect(HELD_OPEN)  # the keep-alive timeout (75 s) is longer than a phase


class Tally:
    """Connections by attack and outcome, the attacks in the order first seen."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def record(self, name: str, expected: frozenset[str], outcome: str) -> None:
        row = self.rows.setdefault(name, {"attack": name, "expected": sorted(expected), "outcomes": {}})
        row["outcomes"][outcome] = row["outcomes"].get(outcome, 0) + 1


async def attempt(attack: Attack, port: int, give_up_at: float) -> str:
    left = give_up_at - time.monotonic()
    gives_up = attack.answer_within is None or left <= attack.answer_within
    try:
        return await asyncio.wait_for(attack.run(port), max(left if gives_up else attack.answer_within, 0.001))
    except asyncio.TimeoutError:
        return UNFINISHED if gives_up else UNANSWERED
    except OSError as exc:
        return f"{CONNECT_FAILED}: {exc.strerror or type(exc).__name__}"


async def keep_attacking(
    port: int, attacks: list[Attack], stop_at: float, give_up_at: float, tally: Tally, pause: float
) -> None:
    for attack in itertools.cycle(attacks):
        if time.monotonic() >= stop_at:
            return
        tally.record(attack.name, attack.expected, await attempt(attack, port, give_up_at))
        await asyncio.sleep(pause)


async def hold_idle(port: int, stop_at: float, tally: Tally) -> None:
    connections = []
    for _ in range(IDLE_CONNECTIONS):
        try:
            connections.append(await connect(port))
        except OSError as exc:
            tally.record(IDLE_ATTACK, IDLE_EXPECTED, f"{CONNECT_FAILED}: {exc.strerror or type(exc).__name__}")
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    for sock in connections:
        try:
            received = sock.recv(65536)
        except BlockingIOError:
            outcome = HELD_OPEN
        except ConnectionResetError:
            outcome = RESET_BY_SERVER
        else:
            outcome = connection_outcome(received) if received else CLOSED_BY_SERVER
        sock.close()
        tally.record(IDLE_ATTACK, IDLE_EXPECTED, outcome)


async def attack_server(port: int, seconds: float, row: bytes, on_ready: Callable[[], None]) -> list[dict]:
    short, slow, tally = short_attacks(row), slow_attacks(row), Tally()
    on_ready()
    stop_at = time.monotonic() + seconds
    give_up_at = stop_at + GRACE_SECONDS
    # Each short-attack loop starts at another attack, so that the slow-to-send ones do not run in step.
    loops = [
        keep_attacking(port, short[i:] + short[:i], stop_at, give_up_at, tally, ATTACK_PAUSE_SECONDS)
        for i in range(0, len(short), -(-len(short) // ATTACKERS))
    ]
    loops += [
        keep_attacking(port, [attack], stop_at, give_up_at, tally, 0.0) for attack, count in slow for _ in range(count)
    ]
    await asyncio.gather(hold_idle(port, stop_at, tally), *loops)
    return list(tally.rows.values())


READY = "ready"


def hostile_process(port: int, seconds: float, row: bytes, pipe) -> None:
    """The hostile clients' process: sends READY when about to start, then the tally's rows and its CPU seconds."""
    rows = asyncio.run(attack_server(port, seconds, row, lambda: pipe.send(READY)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pipe.send((rows, usage.ru_utime + usage.ru_stime))


# ---- valid traffic and /ping ----------------------------------------------------------------------------


class PingProber:
    """GET /ping on a new connection every PING_EVERY_SECONDS, as a load balancer's health check does."""

    def __init__(self, port: int):
        self.port = port
        self.latencies: list[float] = []  # seconds, of the 200 answers
        self.failures: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _probe(self) -> None:
        while not self._stopping.wait(PING_EVERY_SECONDS):
            connection = http.client.HTTPConnection(HOST, self.port, timeout=PING_TIMEOUT_SECONDS)
            started = time.perf_counter()
            try:
                connection.request("GET", "/ping")
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.failures[type(exc).__name__] += 1
                continue
            finally:
                connection.close()
            if response.status == 200:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.failures[f"HTTP {response.status}"] += 1


def run_valid(server: RunningServer, script: Path, body_file: Path, seconds: int) -> dict:
    argv = [
        "wrk",
        f"-t{VALID_THREADS}",
        f"-c{VALID_CONNECTIONS}",
        f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT_SECONDS}s",
        "--latency",
        "-s",
        str(script),
        f"http://{HOST}:{server.port}/invocations",
    ]
    env = os.environ | {"SOAK_BODY_FILE": str(body_file), "SOAK_PAUSE_MS": str(VALID_PAUSE_MS)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise BenchmarkError(
            f"{' '.join(argv)} failed with exit code {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return json.loads(lines[-1])


def cpu_ticks_of(pids: list[int]) -> int:
    """Of the processes still running: a worker replaced during a phase takes its CPU time with it."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            ticks += cpu_ticks(pid)
    return ticks


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchmarkError(f"/proc/{pid}/status has no VmRSS line")


# ---- phases -------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    valid: dict  # run_valid's numbers
    ping_latencies: list[float]
    ping_failures: Counter[str]
    rss_start_mb: dict[int, float]  # by worker pid, after the warm-up
    rss_end_mb: dict[int, float]  # by worker pid; a worker replaced during the phase has none
    rss_peak_mb: dict[int, float]  # VmHWM at the end
    other_cpu: float  # cores' worth of CPU that went to other processes (serving.OtherCpu)
    server_cpu: float  # cores' worth of CPU the server's processes used
    attackers_cpu: float  # cores' worth of CPU the hostile clients' process used
    under_attack: bool
    hostile: list[dict]  # Tally rows; none without attack

    def rss_growth_mb(self) -> dict[int, float | None]:
        return {
            pid: self.rss_end_mb[pid] - mb if pid in self.rss_end_mb else None for pid, mb in self.rss_start_mb.items()
        }


def run_phase(name: str, model_dir: Path, seconds: int, row: bytes, work: Path, hostile: bool) -> Phase:
    """A fresh server per phase: every phase starts from the same state, so their RSS growths compare."""
    script, body_file = work / "valid.lua", work / "valid.csv"
    with running_server("modelcrate", model_dir, WORKERS, work) as server:
        wait_until_healthy(server)
        wait_until_workers_loaded(server, WORKERS)
        warmup = run_valid(server, script, body_file, WARMUP_SECONDS)
        if warmup["not_ok"] or not warmup["requests"]:
            raise server.failure(
                f"answered {warmup['not_ok']} of {warmup['requests']} valid warm-up requests with non-200"
            )
        workers = server.worker_pids()
        rss_start = {pid: vm_rss_mb(pid) for pid in workers}
        server_pids = server.pids()
        other_cpu, server_ticks, started = OtherCpu(server_pids), cpu_ticks_of(server_pids), time.perf_counter()
        prober = PingProber(server.port)
        attackers = None
        if hostile:
            context = multiprocessing.get_context("spawn")  # nothing of this process's threads or libraries
            ours, theirs = context.Pipe()
            attackers = context.Process(target=hostile_process, args=(server.port, seconds, row, theirs), daemon=True)
            attackers.start()
            if not ours.poll(60) or ours.recv() != READY:
                raise BenchmarkError("the hostile clients' process did not start within 60 s")
        prober.start()
        valid = run_valid(server, script, body_file, seconds)
        tally, attackers_cpu_seconds = [], 0.0
        if attackers is not None:
            if not ours.poll(GRACE_SECONDS + 60):
                raise BenchmarkError(f"the hostile clients' process did not finish (exit code {attackers.exitcode})")
            tally, attackers_cpu_seconds = ours.recv()
            attackers.join()
        prober.stop()
        elapsed = time.perf_counter() - started
        server_cpu = (cpu_ticks_of(server_pids) - server_ticks) / CLOCK_TICKS / elapsed
        other_cores = other_cpu.cores()
        time.sleep(RSS_SETTLE_SECONDS)
        now = set(server.worker_pids())
        rss_end = {pid: vm_rss_mb(pid) for pid in workers if pid in now}
        rss_peak = {pid: peak_rss_mb(pid) for pid in workers if pid in now}
        return Phase(
            name=name,
            valid=valid,
            ping_latencies=prober.latencies,
            ping_failures=prober.failures,
            rss_start_mb=rss_start,
            rss_end_mb=rss_end,
            rss_peak_mb=rss_peak,
            other_cpu=other_cores,
            server_cpu=server_cpu,
            attackers_cpu=attackers_cpu_seconds / elapsed,
            under_attack=hostile,
            hostile=tally,
        )


# ---- report -------------------------------------------------------------------------------------------


def unexpected_5xx(hostile: list[dict]) -> int:
    """5xx answers to hostile requests, but for the 501 that RFC 9112 and issue 13 call for on an unknown
    Transfer-Encoding (the attacks that expect it list it)."""
    return sum(
        count * times
        for row in hostile
        for outcome, count in row["outcomes"].items()
        if outcome not in row["expected"]
        for status, times in answers_in(outcome)
        if status.startswith("5")
    )


def outcome_classes(hostile: list[dict]) -> Counter[str]:
    """Answers by status class, an expected 5xx by itself; connections that got no answer by outcome."""
    classes: Counter[str] = Counter()
    for row in hostile:
        for outcome, count in row["outcomes"].items():
            answers = answers_in(outcome)
            if not answers:
                classes[outcome] += count
            for status, times in answers:
                expected = status.startswith("5") and outcome in row["expected"]
                classes[f"{status} (expected)" if expected else f"{status[0]}xx"] += count * times
    return classes


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def baseline_p99_us(phases: list[Phase]) -> float:
    """The mean of the valid-only phases' p99s: one runs before the attack and one after, so that load on the
    machine drifting during the run weighs on the baseline as on the attacked phase."""
    return statistics.mean(phase.valid["p99_us"] for phase in phases if not phase.under_attack)


def targets(phases: list[Phase]) -> list[tuple[str, str, str, bool]]:
    """(target, measured, limit, passed) per acceptance point."""
    (attacked,) = [phase for phase in phases if phase.under_attack]
    rows = []
    hostile_5xx = unexpected_5xx(attacked.hostile)
    rows.append(("hostile requests: 5xx answers (but the expected 501s)", f"{hostile_5xx}", "0", hostile_5xx == 0))
    valid_5xx = sum(phase.valid["server_errors"] for phase in phases)
    rows.append(("valid requests, every phase: 5xx answers", f"{valid_5xx}", "0", valid_5xx == 0))
    growth = attacked.rss_growth_mb()
    replaced = [pid for pid, mb in growth.items() if mb is None]
    largest = max((mb for mb in growth.values() if mb is not None), default=0.0)
    measured = f"{largest:.1f} MB" + (f"; worker(s) {replaced} replaced during the phase" if replaced else "")
    rows.append(
        (
            "RSS growth of each worker under attack, warm-up to end (the largest)",
            measured,
            f"<= {MAX_RSS_GROWTH_MB:g} MB",
            largest <= MAX_RSS_GROWTH_MB and not replaced,
        )
    )
    for phase in phases:
        slowest = max(phase.ping_latencies, default=float("inf"))
        failures = sum(phase.ping_failures.values())
        rows.append(
            (
                f"/ping, {phase.name}: slowest answer; probes unanswered or not 200",
                f"{slowest:.3f} s; {failures} of {len(phase.ping_latencies) + failures}",
                f"<= {MAX_PING_SECONDS:g} s; 0",
                slowest <= MAX_PING_SECONDS and failures == 0,
            )
        )
    baseline_us = baseline_p99_us(phases)
    ratio = attacked.valid["p99_us"] / baseline_us
    rows.append(
        (
            "valid requests: p99 under attack / mean p99 of the valid-only phases",
            f"{ratio:.2f}x ({attacked.valid['p99_us'] / 1e3:.2f} / {baseline_us / 1e3:.2f} ms)",
            f"<= {MAX_P99_RATIO:g}x",
            ratio <= MAX_P99_RATIO,
        )
    )
    return rows


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


METHOD = """\
## Method

- Server: `.venv/bin/serve` on 127.0.0.1 with {workers} workers and the default limits, on the Abalone
  {model}; a fresh server per phase, so that every phase starts from the same state and RSS growths
  compare. Each phase starts once both workers have loaded and gone idle, after {warmup} s of valid traffic.
- Valid traffic, the same in every phase: `wrk --latency -t{threads} -c{connections}`, `POST /invocations` of
  one Abalone CSV row ({row_bytes} bytes), each connection pausing {pause} ms between requests (wrk's
  `delay()`; its latencies leave the pause out). That keeps the server below saturation, so the p99 shows
  what the attacks cost valid requests rather than how much CPU the attacking process takes on this small
  machine. Requests slower than {wrk_timeout} s would count as timeouts, not latencies.
- /ping: a new connection every {ping_ms:g} ms (plus the answer's time), timeout {ping_timeout:g} s.
- Hostile traffic (the middle phase only), from a process of its own: {attackers} loops through the short
  attacks below, pausing {attack_pause_ms:g} ms between two; {slow_heads} slowloris heads, {slow_bodies} slow
  bodies and {slow_valid} slow valid bodies at all times; {idle} idle connections held from the start. An
  attack's connection is read until the server closes it (requests say `Connection: close`); every answer
  on it counts (pipelined requests get several). Answers still owed {grace:g} s after the phase are given up.
- CPU, in cores' worth over the phase: the server's processes; the hostile clients' process; every other
  process on the machine (`/proc/stat` less this run's own, wrk and the prober included in the latter). Much
  CPU to other processes makes every latency here longer and noisier, the baseline's as much.
- RSS: VmRSS of each worker (the server's children) after the warm-up, and {settle:g} s after the traffic
  stopped (bodies in flight at the end are not growth); VmHWM then. MB = 10^6 bytes.
"""


def render(
    phases: list[Phase], model_title: str, row_bytes: int, seconds: int, machine: list[str], started_at
) -> tuple[str, bool]:
    verdicts = targets(phases)
    (attacked,) = [phase for phase in phases if phase.under_attack]
    lines = [
        "# Soak benchmark: `serve` under valid and hostile traffic",
        "",
        f"Run of `.venv/bin/python benchmarks/soak.py --seconds {seconds}` started {started_at:%Y-%m-%d %H:%M} UTC: "
        f"{seconds // 2} s of valid traffic only, {seconds} s of the same valid traffic with hostile traffic, then "
        f"{seconds - seconds // 2} s of valid traffic only again, each on a freshly started server. Ratios compare "
        "numbers of this same run.",
        "",
        "## Machine",
        "",
        *machine,
        "## Targets",
        "",
        *table(
            "| target | measured | limit | result |",
            [
                f"| {target} | {measured} | {limit} | {verdict(passed)} |"
                for target, measured, limit, passed in verdicts
            ],
        ),
        "## Valid requests and /ping",
        "",
    ]
    rows = []
    for phase in phases:
        v, pings = phase.valid, phase.ping_latencies
        rows.append(
            f"| {phase.name} | {v['requests']:,} | {v['requests_per_second']:,.0f} | {v['p50_us'] / 1e3:.2f} "
            f"| {v['p99_us'] / 1e3:.2f} | {v['max_us'] / 1e3:.1f} | {v['not_ok']} | {v['server_errors']} "
            f"| {v['socket_errors']} | {v['timeouts']} | {len(pings)} | {percentile(pings, 0.99) * 1e3:.1f} "
            f"| {max(pings, default=float('nan')) * 1e3:.1f} "
            f"| {', '.join(f'{n} {kind}' for kind, n in phase.ping_failures.items()) or 0} "
            f"| {phase.server_cpu:.2f} | {phase.attackers_cpu:.2f} | {phase.other_cpu:.2f} |"
        )
    lines += table(
        "| phase | valid requests | req/s | p50 ms | p99 ms | max ms | non-200 | 5xx | socket errors | timeouts "
        "| /ping answered | /ping p99 ms | /ping max ms | /ping failures | CPU, cores: server | hostile clients "
        "| other processes |",
        rows,
    )
    lines += ["## Worker memory", ""]
    rows = []
    for phase in phases:
        for number, (pid, start) in enumerate(phase.rss_start_mb.items(), 1):
            growth = phase.rss_growth_mb()[pid]
            if growth is None:
                rows.append(f"| {phase.name} | {number} (pid {pid}) | {start:.1f} | replaced | | |")
                continue
            rows.append(
                f"| {phase.name} | {number} (pid {pid}) | {start:.1f} | {phase.rss_end_mb[pid]:.1f} "
                f"| {growth:+.1f} | {phase.rss_peak_mb[pid]:.1f} |"
            )
    lines += table(
        "| phase | worker | RSS after warm-up, MB | RSS at the end, MB | growth, MB | peak (VmHWM), MB |", rows
    )
    connections = sum(sum(row["outcomes"].values()) for row in attacked.hostile)
    classes = outcome_classes(attacked.hostile)
    lines += [
        "## Hostile traffic",
        "",
        f"{connections:,} hostile connections in {seconds} s. Their answers by class, and the connections "
        "that got none: " + "; ".join(f"{outcome}: {count:,}" for outcome, count in classes.most_common()) + ". "
        "A server may close a connection whose framing it cannot trust without an answer; a 5xx is a failure, "
        "but for the 501 an unknown Transfer-Encoding calls for. An outcome lists every answer on the "
        "connection in order.",
        "",
    ]
    rows = []
    for row in attacked.hostile:
        outcomes = ", ".join(f"{outcome}: {count:,}" for outcome, count in sorted(row["outcomes"].items()))
        unexpected = sorted(set(row["outcomes"]) - set(row["expected"]))
        rows.append(
            f"| {row['attack']} | {sum(row['outcomes'].values()):,} | {outcomes} | {', '.join(row['expected'])} "
            f"| {', '.join(unexpected) or ''} |"
        )
    lines += table("| attack | connections | outcomes | expected | other outcomes |", rows)
    lines.append(
        METHOD.format(
            workers=WORKERS,
            model=model_title,
            warmup=WARMUP_SECONDS,
            threads=VALID_THREADS,
            connections=VALID_CONNECTIONS,
            row_bytes=row_bytes,
            pause=VALID_PAUSE_MS,
            wrk_timeout=WRK_TIMEOUT_SECONDS,
            ping_ms=PING_EVERY_SECONDS * 1e3,
            ping_timeout=PING_TIMEOUT_SECONDS,
            attackers=ATTACKERS,
            attack_pause_ms=ATTACK_PAUSE_SECONDS * 1e3,
            slow_heads=SLOW_HEADS,
            slow_bodies=SLOW_BODIES,
            slow_valid=SLOW_VALID_BODIES,
            idle=IDLE_CONNECTIONS,
            grace=GRACE_SECONDS,
            settle=RSS_SETTLE_SECONDS,
        )
    )
    return "\n".join(lines).rstrip() + "\n", all(passed for *_, passed in verdicts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=int, default=60, help="of the attack, and of valid-only traffic around it (default 60)"
    )
    parser.add_argument("--model", choices=[m.framework for m in MODELS], default="xgboost", help="default xgboost")
    args = parser.parse_args(argv)
    if args.seconds < 10:
        parser.error("--seconds must be at least 10")
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/soak.py needs wrk on PATH (apt-get install wrk)")
    model = next(m for m in MODELS if m.framework == args.model)
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_at_start, revision = load_average(), source_revision()
    row = csv_body(abalone_dataset("regression").x_test[:1])
    with tempfile.TemporaryDirectory(prefix="modelcrate-soak-") as scratch:
        work = Path(scratch)
        (work / "valid.lua").write_text(VALID_WRK_SCRIPT)
        (work / "valid.csv").write_bytes(row)
        model_dir = work / model.framework
        progress(f"{model.title}: training")
        create_sample_model(model.framework, model.model_format, "regression", model_dir)
        try:
            progress(f"phase 1: valid traffic only, {args.seconds // 2} s")
            phases = [run_phase("valid only, before", model_dir, args.seconds // 2, row, work, hostile=False)]
            progress(f"phase 2: valid and hostile traffic, {args.seconds} s")
            phases.append(run_phase("valid + hostile", model_dir, args.seconds, row, work, hostile=True))
            progress(f"phase 3: valid traffic only, {args.seconds - args.seconds // 2} s")
            phases.append(
                run_phase("valid only, after", model_dir, args.seconds - args.seconds // 2, row, work, hostile=False)
            )
        except BenchmarkError as exc:
            sys.exit(f"benchmark failed: {exc}")
    machine = machine_table(load_at_start, revision)
    report, passed = render(phases, model.title, len(row), args.seconds, machine, started_at)
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(report)
    print(report)
    progress(f"report written to {REPORT_PATH.relative_to(REPORT_PATH.parents[2])}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
