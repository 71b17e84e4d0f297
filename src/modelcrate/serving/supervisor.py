"""The process SageMaker starts (PID 1 in the container): binds the port, forks the workers, replaces
crashed ones, kills a worker stuck past the request timeout, and on SIGTERM drains them all.

Started as root, it stays root (so that replaced workers can load a root-only model) and answers no request;
each worker drops to ``config.serving_user`` after loading (privileges.py).

It imports no framework and no numpy: worker processes size their thread pools before loading any.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback

from modelcrate.errors import StartupError
from modelcrate.serving.config import ServingConfig
from modelcrate.serving.draining import cut_off_message
from modelcrate.serving.logs import configure_logging, text_logs
from modelcrate.serving.metrics import SharedMetrics
from modelcrate.serving.model_table import ModelTable
from modelcrate.serving.privileges import ServingUser, access_problem, first_unreadable

log = logging.getLogger("modelcrate.serving")

# Past the drain deadline (MODELCRATE_DRAIN_TIMEOUT), the time a worker has to exit before it is killed: a
# prediction running inline keeps it from even seeing its own deadline.
STOP_GRACE_SECONDS = 3.0
STUCK_GRACE_SECONDS = 10.0  # past the timeout, a worker that did not answer its 504 is killed
MAX_START_FAILURES = 5
EXIT_START_FAILED = 3
EXIT_DRAIN_CUT_OFF = 4  # the drain deadline passed with requests still unanswered
# A report is one write to a pipe, which is atomic up to PIPE_BUF (4096 bytes on Linux): workers' never interleave.
REPORT_BYTES = 4096


def _thread_environment(config: ServingConfig) -> None:
    """One worker per core by default: give each worker its share of cores for OpenMP/BLAS/TensorFlow."""
    threads = str(max(1, (os.cpu_count() or 1) // config.workers))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ.setdefault(name, threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    # Spinning OpenMP threads stall ~15 ms per XGBoost call whenever another process holds a core
    # (measured: p90 0.24 -> 14.7 ms); sleeping ones cost nothing measurable when the core is free.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _report(fd: int, slot: int, **entry) -> None:
    """Tell the supervisor that this worker is ready (``model``: its framework and format) or cannot start
    (``problem``, and ``exception``: a traceback worth showing)."""
    line = json.dumps({"worker": slot, **entry}).encode() + b"\n"
    while len(line) > REPORT_BYTES:  # keep a traceback's end (where the error is) and a message's start
        if entry.get("exception"):
            entry["exception"] = entry["exception"][len(entry["exception"]) // 2 :]
        else:
            entry["problem"] = entry["problem"][: len(entry["problem"]) // 2]
        line = json.dumps({"worker": slot, **entry}).encode() + b"\n"
    os.write(fd, line)


def _worker_main(
    config: ServingConfig,
    sock: socket.socket,
    shared: SharedMetrics,
    slot: int,
    table: ModelTable | None,
    drop_to: ServingUser | None,
    reports: int,
) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    _thread_environment(config)
    try:
        from modelcrate.serving.worker import run_worker

        def on_ready(described: dict) -> None:
            _report(reports, slot, model={key: described.get(key) for key in ("framework", "format")})

        cut_off = run_worker(config, sock, shared, slot, table, drop_to, on_ready)
        return EXIT_DRAIN_CUT_OFF if cut_off else 0
    except StartupError as exc:
        _report(reports, slot, problem=str(exc))
    except Exception as exc:
        # Not the runtime's own refusal: most often the user's inference.py, whose traceback helps.
        _report(reports, slot, problem=f"{type(exc).__name__}: {exc}", exception=traceback.format_exc())
    return EXIT_START_FAILED


class Supervisor:
    def __init__(self, config: ServingConfig):
        self.config = config
        self.shared = SharedMetrics(config.workers)
        self.models: ModelTable | None = None
        self.children: dict[int, int] = {}  # pid -> slot
        self.start_failures = [0] * config.workers
        self.stopping = False
        self.sock: socket.socket | None = None
        # Workers report on this pipe when they are ready or cannot start; the supervisor logs for them all.
        self.reports_in, self.reports_out = os.pipe()
        os.set_blocking(self.reports_in, False)
        self.unread_reports = b""  # the start of a report not yet wholly read
        self.announced = False
        self.problems: dict[int, dict] = {}
        # Root loads the model, then the workers answer as the serving user; any other uid is kept as is.
        self.drop_to = config.serving_user if os.geteuid() == 0 else None

    def spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _worker_main(
                    self.config, self.sock, self.shared, slot, self.models, self.drop_to, self.reports_out
                )
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = slot

    def stop(self, signum, frame) -> None:
        if not self.stopping:
            log.info(f"received {signal.Signals(signum).name}: draining workers")
        self.stop_workers()

    def stop_workers(self) -> None:
        self.stopping = True
        for pid in self.children:
            _signal(pid, signal.SIGTERM)

    def model_problem(self) -> str | None:
        """What keeps the model from being served that the supervisor sees without loading it: (not root) files
        this uid cannot read, or a missing directory. The reason and the fix, in one line."""
        if self.config.multi_model:
            return None
        blocked = None if self.drop_to is not None else first_unreadable(self.config.model_dir)  # root reads all
        if blocked is not None:
            return access_problem(
                blocked,
                f"start the container as root (the default: workers drop to {self.config.serving_user} after "
                f"loading) or make the model files readable by uid {os.getuid()}",
            )
        if not os.path.isdir(self.config.model_dir):
            return (
                f"model directory {self.config.model_dir} does not exist (or is not a directory): "
                "set SM_MODEL_DIR (modelcrate serve --model-dir) to the directory that holds the model"
            )
        return None

    def listen(self) -> str | None:
        """Bind the port; else the reason and the fix, in one line."""
        host, port = self.config.host, self.config.port
        try:
            self.sock = socket.create_server((host, port), backlog=2048)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"cannot listen on {host}:{port}: address already in use; stop what serves there or choose "
                    "another port (SAGEMAKER_BIND_TO_PORT, modelcrate serve --port)"
                )
            return (
                f"cannot listen on {host}:{port}: {os.strerror(exc.errno).lower()}; "
                "bind another address (MODELCRATE_BIND_HOST, modelcrate serve --host)"
            )
        self.sock.setblocking(False)
        return None

    def run(self) -> int:
        problem = self.model_problem() or self.listen()
        if problem:
            log.error(f"cannot start: {problem}")
            return EXIT_START_FAILED
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        # A multi-model endpoint's loaded models, shared by the workers: created before they are forked.
        self.models = ModelTable() if self.config.multi_model else None
        if self.models is not None and self.drop_to is not None:
            self.models.give_to(self.drop_to)
        for slot in range(self.config.workers):
            self.spawn(slot)
        exit_code = 0
        while self.children and not self.stopping:
            self._read_reports()
            if not self._reap_and_replace():
                exit_code = 1
                break
            self._kill_stuck_workers()
            time.sleep(0.1)
        self.stopping = True
        self.sock.close()  # no worker is started any more: once the workers close theirs, connections are refused
        if not self._wait_for_children() and exit_code == 0:
            exit_code = EXIT_DRAIN_CUT_OFF
        if self.models is not None:
            self.models.remove()
        return exit_code

    def _read_reports(self) -> None:
        try:
            data = self.unread_reports + os.read(self.reports_in, 1 << 16)
        except BlockingIOError:
            return
        *lines, self.unread_reports = data.split(b"\n")
        for line in lines:
            entry = json.loads(line)
            slot = entry.pop("worker")
            if "problem" in entry:
                self.problems.setdefault(slot, entry)
            elif not self.announced:
                self.announced = True
                self.announce(entry["model"])

    def announce(self, model: dict) -> None:
        """Once the first worker answers: on a terminal one line for a person, else the JSON "serving" line.
        ``model``: the framework and format the worker loaded (none when only the user's model_fn knows them)."""
        config = self.config
        url = f"http://{config.host}:{config.port}"
        known = {key: value for key, value in model.items() if value}
        if config.multi_model:
            where, what = {"multi_model_root": str(config.multi_model_root)}, f"models under {config.multi_model_root}"
        else:
            kind = f"{known['framework']}/{known['format']} " if known else ""
            where, what = {"model_dir": str(config.model_dir)}, f"{kind}model {config.model_dir}"
        if config.text_logs:
            workers = f"{config.workers} worker{'s' if config.workers > 1 else ''}"
            print(f"serving {what} on {url} with {workers}; Ctrl-C stops", file=sys.stderr, flush=True)
            return
        answer_as = str(self.drop_to) if self.drop_to is not None else f"uid {os.getuid()}"
        extra = {"url": url, "port": config.port, "workers": config.workers, "workers_answer_as": answer_as}
        log.info("serving", extra={**extra, **where, **known})

    def _reap_and_replace(self) -> bool:
        """Replace dead workers; False when a worker cannot even start (the model or config is broken)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            slot = self.children.pop(pid, None)
            if slot is None:
                continue  # not ours (PID 1 reaps orphans too)
            was_ready = self.shared.is_ready(slot)
            self.shared.slot(slot).set_ready(False)
            code = os.waitstatus_to_exitcode(status)
            if code == EXIT_START_FAILED or not was_ready:
                self.start_failures[slot] += 1
                if code == EXIT_START_FAILED or self.start_failures[slot] >= MAX_START_FAILURES:
                    self._read_reports()  # the worker wrote its report before it exited
                    self._log_start_failure(slot, code)
                    self.stop_workers()
                    return False
            else:
                self.start_failures[slot] = 0
            log.warning("worker exited; replacing it", extra={"worker": slot, "exit_code": code})
            self.spawn(slot)

    def _log_start_failure(self, slot: int, code: int) -> None:
        """One line for the whole server, whichever of its workers failed first."""
        report = self.problems.get(slot)
        if report is None:
            problem = f"a worker exited (code {code}) before it was ready, {self.start_failures[slot]} times"
            log.error(f"cannot start: {problem}", extra={"worker": slot})
            return
        trace = {"exception": report["exception"]} if "exception" in report else {}
        log.error(f"cannot start: {report['problem']}", extra={"worker": slot, **trace})

    def _kill_stuck_workers(self) -> None:
        now = time.monotonic()
        for pid, slot in self.children.items():
            busy = self.shared.busy_since(slot)
            if busy and now - busy > self.config.timeout + STUCK_GRACE_SECONDS:
                log.error("worker stuck past the request timeout; killing it", extra={"worker": slot})
                _signal(pid, signal.SIGKILL)
                self.shared.slot(slot).end()

    def _wait_for_children(self) -> bool:
        """Wait for the draining workers, killing those still running past the drain deadline; True when every
        worker answered all it had received."""
        deadline = time.monotonic() + self.config.drain_timeout + STOP_GRACE_SECONDS
        cut_off, clean = 0, True
        while self.children and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                time.sleep(0.05)
                continue
            slot = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            # SIGTERM's default action (or SIGINT's: Ctrl-C on a terminal reaches every process of the group) ends
            # only a worker still starting: it had not accepted any connection. Nor had one that could not start
            # (after the first, whose reason was logged).
            if slot is None or code in (0, -signal.SIGTERM, -signal.SIGINT, EXIT_START_FAILED):
                continue
            clean = False
            if code == EXIT_DRAIN_CUT_OFF:
                cut_off += self.shared.unanswered(slot)
            else:
                log.error("a worker failed while draining", extra={"worker": slot, "exit_code": code})
        killed = len(self.children)
        for pid, slot in self.children.items():
            _signal(pid, signal.SIGKILL)
            # A worker stuck in a prediction since before SIGTERM never began its drain, so never counted it.
            cut_off += max(self.shared.unanswered(slot), 1 if self.shared.busy_since(slot) else 0)
        if cut_off or killed:
            log.error(cut_off_message(self.config.drain_timeout, cut_off), extra={"workers_killed": killed})
        return clean and not killed


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def serve(config: ServingConfig) -> int:
    configure_logging(config.log_level, config.text_logs)
    return Supervisor(config).run()


def serve_from_env(**overrides) -> int:
    """Read the environment (and CLI ``overrides``), then serve; a bad setting exits with its reason, logged in
    the format asked for."""
    configure_logging(logging.INFO, text_logs(os.environ))
    try:
        config = ServingConfig.from_env(**overrides)
    except StartupError as exc:
        log.error(f"cannot start: {exc}")
        return 2
    return serve(config)
