"""A worker's side of a multi-model endpoint (``SAGEMAKER_MULTI_MODEL=true``): SageMaker's /models API.

SageMaker copies each model to ``/opt/ml/models/<name>/model`` (the root is ``MODELCRATE_MULTI_MODEL_ROOT``),
then loads it with ``POST /models {"model_name", "url"}``, invokes it with ``POST /models/<name>/invoke``
and unloads it with ``DELETE /models/<name>``. The shared :class:`ModelTable` says which models are
loaded; every worker holds its own copy of each (an :class:`InferenceService`, with the model's own
``code/`` hooks): the worker that answered the load at once, the others within ``PRELOAD_SECONDS``, or
at the latest on their first request for it.

A load is refused with 507 when ``MODELCRATE_MAX_LOADED_MODELS`` models are loaded already, or when the
model would not fit in memory: the size of its files once per worker (a cheap, rough estimate of its
size in memory) must leave ``MODELCRATE_MIN_FREE_MEMORY_MB`` of the available memory free.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import dataclasses
import gc
import json
import logging
import os
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote

from modelcrate.errors import StartupError
from modelcrate.serving.config import MIB, ServingConfig
from modelcrate.serving.errors import BadRequest, Conflict, HttpError, InsufficientStorage, NotFound
from modelcrate.serving.model_table import ModelTable
from modelcrate.serving.privileges import access_problem, first_unreadable
from modelcrate.serving.service import InferenceService

log = logging.getLogger("modelcrate.serving")

PRELOAD_SECONDS = 0.5
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_NAME_LENGTH = 1024
LOAD_BODY = '{"model_name": "<name>", "url": "/opt/ml/models/<name>/model"}'
# (limit, usage, statistics, reclaimable page cache counter) for cgroup v2, then v1.
_CGROUP_MEMORY = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        "/sys/fs/cgroup/memory/memory.stat",
        "total_inactive_file",
    ),
)


def available_memory_bytes() -> int | None:
    """MemAvailable, or less when the container's cgroup limit leaves less (a container sees the host's
    /proc/meminfo); None where neither can be read."""
    available = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    for limit_file, usage_file, stat_file, cache_counter in _CGROUP_MEMORY:
        try:
            limit = int(Path(limit_file).read_text())  # "max": no limit in this cgroup
            usage = int(Path(usage_file).read_text())
            stats = dict(line.split() for line in Path(stat_file).read_text().splitlines())
            free = limit - usage + int(stats.get(cache_counter, 0))
        except (OSError, ValueError):
            continue
        return free if available is None else min(available, free)
    return available


def _files_size(directory: Path) -> int:
    size = 0
    for parent, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.stat(os.path.join(parent, name)).st_size
    return size


def _page_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _name_of_page_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest(f"next_page_token {token!r:.60} is not one this server gave; start again without it") from None


def _page_size(values: list[str] | None) -> int:
    if not values:
        return DEFAULT_PAGE_SIZE
    raw = values[0]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadRequest(f"max_results={raw!r:.20} must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def _valid_name(name) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and name not in (".", "..")
        and "/" not in name
        and name.isprintable()
        and not any(c.isspace() for c in name)
    )


class MultiModelHost:
    def __init__(self, config: ServingConfig, table: ModelTable):
        self.config = config
        self.table = table
        self.root = Path(os.path.normpath(config.multi_model_root))
        self._seen = -1  # the table generation this worker last read
        self._entries: dict[str, dict] = {}
        self._services: dict[str, tuple[str, InferenceService]] = {}  # name -> (entry id, its service)
        self._failed: set[str] = set()  # entry ids this worker could not load: preload does not retry them

    # ---- keeping this worker in step with the table ----

    def refresh(self) -> None:
        """Read the table again if another worker changed it; drop the models it no longer holds."""
        if self.table.generation == self._seen:
            return
        self._seen, self._entries = self.table.read()
        dropped = [
            name for name, (entry_id, _) in self._services.items() if self._entries.get(name, {}).get("id") != entry_id
        ]
        for name in dropped:
            del self._services[name]
        if dropped:
            gc.collect()  # models may hold reference cycles (Keras layers): give their memory back now

    def preload(self) -> None:
        """Load what other workers loaded, so that this worker is ready before its first request for it."""
        self.refresh()
        for name, entry in self._entries.items():
            if name in self._services or entry["id"] in self._failed:
                continue
            try:
                self._services[name] = (entry["id"], self._load(Path(entry["path"])))
            except Exception:
                self._failed.add(entry["id"])
                log.exception("cannot load a model another worker loaded", extra={"model": name})

    def service(self, name: str) -> InferenceService:
        """The service answering ``POST /models/<name>/invoke``."""
        self.refresh()
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(f"model {name!r} is not loaded; load it first with POST /models")
        loaded = self._services.get(name)
        if loaded is None:
            try:
                loaded = self._services[name] = (entry["id"], self._load(Path(entry["path"])))
            except StartupError as exc:
                raise HttpError(f"model {name!r} is loaded, but this worker cannot load it: {exc}") from None
        return loaded[1]

    def _load(self, model_dir: Path) -> InferenceService:
        service = InferenceService.load(dataclasses.replace(self.config, model_dir=model_dir))
        service.warm_up()
        return service

    # ---- the management API: (status, JSON body); client errors raise HttpError ----

    def manage(self, method: bytes, path: bytes, query: bytes, body: bytes) -> tuple[int, bytes]:
        """``/models`` and ``/models/<name>`` (the worker answers ``/models/<name>/invoke`` itself)."""
        segments = [s for s in path.split(b"/")[2:] if s]
        if not segments:
            if method == b"POST":
                return self.load(body)
            if method in (b"GET", b"HEAD"):
                return self.list(query)
            raise HttpError("use GET /models to list the loaded models, POST /models to load one", 405)
        if len(segments) == 1:
            name = unquote(segments[0].decode("utf-8", "replace"))
            if method in (b"GET", b"HEAD"):
                return self.describe(name)
            if method == b"DELETE":
                return self.unload(name)
            raise HttpError(f"use GET or DELETE /models/{name}, or POST /models/{name}/invoke", 405)
        raise NotFound("not found: this endpoint answers /models, /models/<name> and /models/<name>/invoke")

    def load(self, body: bytes) -> tuple[int, bytes]:
        name, url = self._load_request(body)
        model_dir = self._model_dir(url)
        with self.table.change() as entries:
            if name in entries:
                raise Conflict(f"model {name!r} is already loaded; unload it first with DELETE /models/{name}")
            limit = self.config.max_loaded_models
            if limit is not None and len(entries) >= limit:
                raise InsufficientStorage(
                    f"{len(entries)} models are loaded, as many as MODELCRATE_MAX_LOADED_MODELS={limit} allows; "
                    "unload one first"
                )
            self._check_memory(name, model_dir)
            try:
                service = self._load(model_dir)
            except StartupError as exc:
                raise BadRequest(f"cannot load model {name!r} from {url}: {exc}") from None
            except MemoryError:
                raise InsufficientStorage(f"out of memory while loading model {name!r}; unload a model first") from None
            details = service.predictor.describe() if service.predictor else {}
            entry = {"id": uuid.uuid4().hex, "url": url, "path": str(model_dir), "loaded_at": time.time(), **details}
            entries[name] = entry
        self._services[name] = (entry["id"], service)
        log.info("model loaded", extra={"model": name, "url": url})
        return 200, json.dumps({"modelName": name, "modelUrl": url}).encode()

    def list(self, query: bytes) -> tuple[int, bytes]:
        self.refresh()
        params = parse_qs(query.decode("latin-1"))
        size = _page_size(params.get("max_results"))
        names = sorted(self._entries)
        tokens = params.get("next_page_token")
        start = bisect.bisect_right(names, _name_of_page_token(tokens[0])) if tokens else 0
        page = names[start : start + size]
        answer: dict = {"models": [{"modelName": n, "modelUrl": self._entries[n]["url"]} for n in page]}
        if start + size < len(names):
            answer["nextPageToken"] = _page_token(page[-1])
        return 200, json.dumps(answer).encode()

    def describe(self, name: str) -> tuple[int, bytes]:
        self.refresh()
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(f"model {name!r} is not loaded")
        details = {k: v for k, v in entry.items() if k not in ("id", "url", "path")}
        return 200, json.dumps({"modelName": name, "modelUrl": entry["url"], **details}).encode()

    def unload(self, name: str) -> tuple[int, bytes]:
        with self.table.change() as entries:
            if entries.pop(name, None) is None:
                raise NotFound(f"model {name!r} is not loaded")
        if self._services.pop(name, None) is not None:
            gc.collect()
        log.info("model unloaded", extra={"model": name})
        return 200, json.dumps({"modelName": name}).encode()

    # ---- checks before a load ----

    def _load_request(self, body: bytes) -> tuple[str, str]:
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict):
            raise BadRequest(f"POST /models takes a JSON object: {LOAD_BODY}")
        name, url = request.get("model_name"), request.get("url")
        if not _valid_name(name):
            raise BadRequest(
                f"model_name {name!r:.60} must be a string of 1 to {MAX_NAME_LENGTH} printable characters, "
                f"without spaces or '/'; send {LOAD_BODY}"
            )
        if not isinstance(url, str) or not url.strip():
            raise BadRequest(f"url {url!r:.60} must name the directory holding the model files; send {LOAD_BODY}")
        return name, url

    def _model_dir(self, url: str) -> Path:
        if "://" in url:
            raise BadRequest(
                f"url {url} is not a local directory; SageMaker copies each model to {self.root}/<name>/model "
                "and sends that path"
            )
        # Lexically, not resolved: the models directory may hold symbolic links, but no '..' leads out of it.
        model_dir = Path(os.path.normpath(self.root / url))
        if not model_dir.is_relative_to(self.root):
            raise BadRequest(
                f"url {url} is outside the models directory {self.root}; models live in {self.root}/<name>/model "
                "(set MODELCRATE_MULTI_MODEL_ROOT to serve another directory)"
            )
        blocked = first_unreadable(model_dir)
        if blocked is not None:
            raise HttpError(
                access_problem(
                    blocked,
                    "a multi-model endpoint loads models as the uid its workers answer as; make the model files "
                    f"readable by uid {os.getuid()}",
                )
            )
        if not model_dir.exists():
            raise NotFound(f"url {url} does not exist; copy the model files there first")
        if not model_dir.is_dir():
            raise BadRequest(f"url {url} is not a directory; send the directory that holds the model files")
        return model_dir

    def _check_memory(self, name: str, model_dir: Path) -> None:
        available = available_memory_bytes()
        if available is None:
            return
        size = _files_size(model_dir)
        needed = size * self.config.workers
        if available - needed < self.config.min_free_memory_mb * MIB:
            raise InsufficientStorage(
                f"not enough memory for model {name!r}: it needs about {needed / MIB:.0f} MiB "
                f"({size / MIB:.1f} MiB of files x {self.config.workers} workers), {available / MIB:.0f} MiB are "
                f"available and MODELCRATE_MIN_FREE_MEMORY_MB={self.config.min_free_memory_mb} must stay free; "
                "unload a model first"
            )
