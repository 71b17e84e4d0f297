"""Fresh databases for the registry's tests: a SQLite file, or a new database on a real PostgreSQL server.

The server is the one at MODELCRATE_TEST_POSTGRES_URL (.ci/run sets it from scripts/setup-postgres.sh). Outside
CI, when the variable is unset, the script runs once per session to provide one. PostgreSQL tests never skip:
a missing server fails them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

DATABASE_BACKENDS = ["sqlite", "postgresql"]
POSTGRES_URL_VARIABLE = "MODELCRATE_TEST_POSTGRES_URL"
SETUP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup-postgres.sh"
FRESH_DATABASE_PREFIX = "modelcrate_test_"


@functools.cache
def _run_setup_script() -> subprocess.CompletedProcess:
    # Cached whether it worked or not: a failing run (apt, server start) must not repeat for every test.
    return subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)


@functools.cache
def postgres_server_url() -> str:
    """The SQLAlchemy URL of the test server's own database (the role there may CREATE DATABASE)."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(
            f"{POSTGRES_URL_VARIABLE} is not set, so the registry's PostgreSQL tests have no server: run "
            f"`bash scripts/setup-postgres.sh` and export {POSTGRES_URL_VARIABLE} with the URL on its last line "
            "(.ci/run does both)",
            pytrace=False,
        )
    run = _run_setup_script()
    if run.returncode != 0 or not run.stdout.strip():
        pytest.fail(
            f"{POSTGRES_URL_VARIABLE} is not set and {SETUP_SCRIPT} failed (exit {run.returncode}), so the "
            f"registry's PostgreSQL tests have no server; its output ends with:\n{run.stderr[-3000:]}\n"
            f"Fix that (it must run as root), or export {POSTGRES_URL_VARIABLE} with the URL of a server where "
            "the role may CREATE DATABASE.",
            pytrace=False,
        )
    return run.stdout.strip().splitlines()[-1]


def _admin_connection(server: URL) -> psycopg.Connection:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    return psycopg.connect(server.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True)


def database_url(backend: str, tmp_path: Path) -> str:
    """The URL of a new, empty database: a SQLite file under ``tmp_path``, or a uniquely named database on the
    test server. A PostgreSQL one stays until ``drop_database(url)``; ``fresh_database`` does both."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'registry-{uuid.uuid4().hex[:8]}.sqlite3'}"
    if backend == "postgresql":
        server = make_url(postgres_server_url())
        name = f"{FRESH_DATABASE_PREFIX}{uuid.uuid4().hex[:8]}"
        with _admin_connection(server) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return server.set(database=name).render_as_string(hide_password=False)
    raise ValueError(f"unknown database backend {backend!r}; expected one of {DATABASE_BACKENDS}")


def drop_database(url: str) -> None:
    """Drop a database made by ``database_url``, even while connections to it are still open."""
    name = make_url(url).database
    with _admin_connection(make_url(postgres_server_url())) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new, empty database of ``backend``; a PostgreSQL one is dropped on exit."""
    url = database_url(backend, tmp_path)
    try:
        yield url
    finally:
        if backend == "postgresql":
            drop_database(url)
