"""The runtime's configuration, read once from the environment (SageMaker's variables)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelcrate.serving import privileges
from modelcrate.serving.errors import ConfigError
from modelcrate.serving.logs import LOG_FORMAT_VARIABLE, LOG_FORMATS, text_logs

MIB = 1024 * 1024
REALTIME_PAYLOAD_MB = 6
MAX_PAYLOAD_MB = 100
# Multi-model endpoints: memory a load must leave free for requests and the frameworks' own code.
MIN_FREE_MEMORY_MB = 256
INFERENCE_KEYS = ("predicted_label", "probability", "probabilities", "labels")
BATCHING_MODES = ("off", "on", "auto")
# Request head limits, near other servers' defaults: Apache's and nginx's 8 KiB request line, h11's (uvicorn's)
# 16 KiB of head, Apache's 100 header fields. SageMaker's own headers are far smaller (custom attributes: 1 KiB).
MAX_URL_BYTES = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16384
# Reading a request is timed, predicting it is not (SAGEMAKER_MODEL_SERVER_TIMEOUT bounds that). An idle
# connection lives 75 s, as nginx's do: longer than the 60 s idle timeout of most front ends, so that the
# server does not close a connection its client is about to reuse.
KEEP_ALIVE_TIMEOUT = 75.0
HEADER_TIMEOUT = 20.0  # Apache's mod_reqtimeout
BODY_TIMEOUT = 60.0  # the whole body: 100 MiB at 2 MB/s
MAX_CONNECTIONS = 1000  # per worker, as gunicorn's worker_connections
# After SIGTERM, the time to answer the requests already received: SageMaker sends SIGKILL 30 s after SIGTERM,
# and the supervisor needs a moment past this deadline to reap the workers.
DRAIN_TIMEOUT = 25.0
BATCH_STRATEGIES = {
    "MULTI_RECORD": "MULTI_RECORD",
    "MULTIRECORD": "MULTI_RECORD",
    "SINGLE_RECORD": "SINGLE_RECORD",
    "SINGLERECORD": "SINGLE_RECORD",
}


def parse_keys(raw: str | None, source: str) -> tuple[str, ...] | None:
    """Inference keys as SageMaker spells them: split on ',', strip, lower-case."""
    if raw is None or not raw.strip():
        return None
    keys = tuple(k.strip().lower() for k in raw.split(",") if k.strip())
    unknown = [k for k in keys if k not in INFERENCE_KEYS]
    if unknown:
        raise ConfigError(
            f"{source}: unknown inference key(s) {', '.join(unknown)}; known keys: {', '.join(INFERENCE_KEYS)}"
        )
    return keys


def _int(env: Mapping[str, str], name: str, default: int | None, minimum: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set a whole number of at least {minimum}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw} must be positive")
    return value


def drain_timeout(env: Mapping[str, str]) -> float:
    """MODELCRATE_DRAIN_TIMEOUT: after SIGTERM, the seconds a server has to answer the requests it received."""
    return _seconds(env, "MODELCRATE_DRAIN_TIMEOUT", DRAIN_TIMEOUT)


def _milliseconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of milliseconds") from None
    if not 0 <= value <= 1000:
        raise ConfigError(f"{name}={raw} must be between 0 and 1000 milliseconds")
    return value


def in_container(root: Path = Path("/")) -> bool:
    """True inside a container: Docker (SageMaker's engine) creates /.dockerenv in each, Podman
    /run/.containerenv. Not /proc/1/cgroup: under cgroup v2 a container's reads "0::/", as the host's does."""
    return (root / ".dockerenv").exists() or (root / "run" / ".containerenv").exists()


def default_bind_host() -> str:
    """Every address inside a container (SageMaker reaches it from outside); only this machine elsewhere."""
    return "0.0.0.0" if in_container() else "127.0.0.1"


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ServingConfig:
    model_dir: Path = Path("/opt/ml/model")
    model_format: str | None = None
    model_file: str | None = None
    host: str = field(default_factory=default_bind_host)
    port: int = 8080
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout: float = 60.0
    default_accept: str = "application/json"
    max_payload_mb: int | None = None  # SAGEMAKER_MAX_PAYLOAD_IN_MB, when set
    log_level: int = 20
    text_logs: bool = False  # JSON lines unless MODELCRATE_LOG_FORMAT=text, or unset on a terminal (logs.py)
    program: str = "inference.py"
    submit_directory: Path | None = None
    batch: bool = False
    batch_strategy: str = "MULTI_RECORD"
    max_concurrent_transforms: int | None = None
    inference_supported: tuple[str, ...] | None = None
    inference_input: tuple[str, ...] | None = None
    inference_output: tuple[str, ...] | None = None
    multi_model: bool = False  # SAGEMAKER_MULTI_MODEL: models come and go through /models
    multi_model_root: Path = Path("/opt/ml/models")
    max_loaded_models: int | None = None
    min_free_memory_mb: int = MIN_FREE_MEMORY_MB
    # Adaptive batching: concurrent /invocations of the model in one worker share one predict call.
    batching: str = "auto"  # off; on: wait up to max_batch_wait_ms to fill a batch; auto: batch what is queued
    max_batch_rows: int = 256
    max_batch_wait_ms: float = 2.0
    max_url_bytes: int = MAX_URL_BYTES  # beyond it: 414
    max_headers: int = MAX_HEADERS  # distinct header names per request; beyond it: 431
    max_header_bytes: int = MAX_HEADER_BYTES  # of header names and values; beyond it: 431
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT  # seconds a connection may wait for its next request
    header_timeout: float = HEADER_TIMEOUT  # seconds from a request's first byte to its last header; then 408
    body_timeout: float = BODY_TIMEOUT  # seconds from its headers to the end of its body; then 408
    max_connections: int = MAX_CONNECTIONS  # per worker; past it the longest-waiting connection is closed
    drain_timeout: float = DRAIN_TIMEOUT  # seconds after SIGTERM to answer the requests already received
    # Serve a model whose files or framework version differ from what modelcrate.json records, with a warning.
    accept_model_mismatch: bool = False
    # Started as root, workers answer as this user once they have loaded the model (privileges.py).
    serving_user: privileges.ServingUser = field(default_factory=lambda: privileges.serving_user(None))

    @property
    def max_payload_bytes(self) -> int:
        """The request body limit: 6 MiB for realtime endpoints; a batch job may send up to 100 MiB unless it
        says how much (0 means chunked streaming of whole objects, bounded by the batch maximum)."""
        if self.max_payload_mb is None:
            return (MAX_PAYLOAD_MB if self.batch else REALTIME_PAYLOAD_MB) * MIB
        return (self.max_payload_mb or MAX_PAYLOAD_MB) * MIB

    @property
    def code_dir(self) -> Path:
        return self.submit_directory or self.model_dir / "code"

    @property
    def execution_parameters(self) -> dict:
        payload_mb = REALTIME_PAYLOAD_MB if self.max_payload_mb is None else self.max_payload_mb
        return {
            # By default as many as there are workers, within the 100 MB budget of concurrency x payload.
            "MaxConcurrentTransforms": self.max_concurrent_transforms
            or max(1, min(self.workers, MAX_PAYLOAD_MB // max(payload_mb, 1))),
            "BatchStrategy": self.batch_strategy,
            "MaxPayloadInMB": payload_mb,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> ServingConfig:
        """Read SageMaker's variables; keyword ``overrides`` (CLI flags) win over the environment."""
        env = os.environ if env is None else env
        strategy_raw = env.get("SAGEMAKER_BATCH_STRATEGY", "MULTI_RECORD").strip()
        strategy = BATCH_STRATEGIES.get(strategy_raw.upper())
        if strategy is None:
            raise ConfigError(f"SAGEMAKER_BATCH_STRATEGY={strategy_raw!r}; use MULTI_RECORD or SINGLE_RECORD")
        submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY", "").strip()
        log_format = env.get(LOG_FORMAT_VARIABLE, "").strip().lower()
        if log_format and log_format not in LOG_FORMATS:
            raise ConfigError(f"{LOG_FORMAT_VARIABLE}={log_format!r}; use {' or '.join(LOG_FORMATS)} (or unset it)")
        batching = env.get("MODELCRATE_BATCHING", "").strip().lower() or "auto"
        if batching not in BATCHING_MODES:
            raise ConfigError(f"MODELCRATE_BATCHING={batching!r}; use {', '.join(BATCHING_MODES)}")
        values = dict(
            model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            model_format=env.get("MODELCRATE_MODEL_FORMAT") or None,
            model_file=env.get("MODELCRATE_MODEL_FILE") or None,
            host=env.get("MODELCRATE_BIND_HOST", "").strip() or default_bind_host(),
            port=_int(env, "SAGEMAKER_BIND_TO_PORT", 8080, 1),
            workers=_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", os.cpu_count() or 1, 1),
            timeout=_seconds(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60.0),
            default_accept=env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "").strip() or "application/json",
            max_payload_mb=_int(env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", None, 0),
            log_level=_int(env, "SAGEMAKER_CONTAINER_LOG_LEVEL", 20, 0),
            text_logs=text_logs(env),
            program=env.get("SAGEMAKER_PROGRAM", "").strip() or "inference.py",
            # SageMaker's framework containers pass an s3:// URI here for training code; only a local
            # directory can hold inference code inside a network-isolated container.
            submit_directory=Path(submit) if submit and "://" not in submit else None,
            batch=_flag(env, "SAGEMAKER_BATCH"),
            batch_strategy=strategy,
            max_concurrent_transforms=_int(env, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", 0, 0) or None,
            inference_supported=parse_keys(env.get("SAGEMAKER_INFERENCE_SUPPORTED"), "SAGEMAKER_INFERENCE_SUPPORTED"),
            inference_input=parse_keys(env.get("SAGEMAKER_INFERENCE_INPUT"), "SAGEMAKER_INFERENCE_INPUT"),
            inference_output=parse_keys(env.get("SAGEMAKER_INFERENCE_OUTPUT"), "SAGEMAKER_INFERENCE_OUTPUT"),
            multi_model=_flag(env, "SAGEMAKER_MULTI_MODEL"),
            multi_model_root=Path(env.get("MODELCRATE_MULTI_MODEL_ROOT", "").strip() or "/opt/ml/models"),
            max_loaded_models=_int(env, "MODELCRATE_MAX_LOADED_MODELS", None, 1),
            min_free_memory_mb=_int(env, "MODELCRATE_MIN_FREE_MEMORY_MB", MIN_FREE_MEMORY_MB, 0),
            batching=batching,
            max_batch_rows=_int(env, "MODELCRATE_MAX_BATCH_ROWS", 256, 1),
            max_batch_wait_ms=_milliseconds(env, "MODELCRATE_MAX_BATCH_WAIT_MS", 2.0),
            max_url_bytes=_int(env, "MODELCRATE_MAX_URL_BYTES", MAX_URL_BYTES, 64),
            max_headers=_int(env, "MODELCRATE_MAX_HEADERS", MAX_HEADERS, 8),
            max_header_bytes=_int(env, "MODELCRATE_MAX_HEADER_BYTES", MAX_HEADER_BYTES, 1024),
            keep_alive_timeout=_seconds(env, "MODELCRATE_KEEP_ALIVE_TIMEOUT", KEEP_ALIVE_TIMEOUT),
            header_timeout=_seconds(env, "MODELCRATE_HEADER_TIMEOUT", HEADER_TIMEOUT),
            body_timeout=_seconds(env, "MODELCRATE_BODY_TIMEOUT", BODY_TIMEOUT),
            max_connections=_int(env, "MODELCRATE_MAX_CONNECTIONS", MAX_CONNECTIONS, 16),
            drain_timeout=drain_timeout(env),
            # Spelled out, not imported from predictors/trust.py (which names it in its messages): that would load
            # numpy into the supervisor.
            accept_model_mismatch=_flag(env, "MODELCRATE_ACCEPT_MODEL_MISMATCH"),
            serving_user=privileges.serving_user(env.get(privileges.SERVE_USER_VARIABLE)),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"{self.workers} workers would serve nothing: ask for at least 1 (--workers)")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} is out of range 1-65535")
        if (self.max_payload_mb or 0) > MAX_PAYLOAD_MB:
            raise ConfigError(
                f"SAGEMAKER_MAX_PAYLOAD_IN_MB={self.max_payload_mb} exceeds the limit of {MAX_PAYLOAD_MB}"
            )
        params = self.execution_parameters
        if params["MaxConcurrentTransforms"] * max(params["MaxPayloadInMB"], 1) > MAX_PAYLOAD_MB:
            raise ConfigError(
                f"MaxConcurrentTransforms ({params['MaxConcurrentTransforms']}) x MaxPayloadInMB "
                f"({params['MaxPayloadInMB']}) exceeds {MAX_PAYLOAD_MB}; lower SAGEMAKER_MAX_CONCURRENT_TRANSFORMS "
                "or SAGEMAKER_MAX_PAYLOAD_IN_MB"
            )
