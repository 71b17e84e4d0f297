"""Where the registry lives and how it is opened: SQLite under the user's data directory by default,
PostgreSQL (or any SQLAlchemy URL) from ``MODELCRATE_DATABASE_URL``; the schema migrated on open."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 60_000  # writers queue behind each other instead of failing


def registry_home() -> Path:
    """``MODELCRATE_HOME``, else ``$XDG_DATA_HOME/modelcrate`` (``~/.local/share/modelcrate``)."""
    if os.environ.get("MODELCRATE_HOME"):
        return Path(os.environ["MODELCRATE_HOME"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "modelcrate"


def database_url() -> str:
    url = os.environ.get("MODELCRATE_DATABASE_URL", "").strip()
    if url:
        return url
    home = registry_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'registry.db'}"


def artifact_store_location() -> str:
    """``MODELCRATE_ARTIFACT_STORE`` (a directory or ``s3://bucket/prefix``), else ``<home>/artifacts``."""
    return os.environ.get("MODELCRATE_ARTIFACT_STORE", "").strip() or str(registry_home() / "artifacts")


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _configure(connection, _record):
        connection.isolation_level = None  # SQLAlchemy issues BEGIN itself (below), not the sqlite3 module
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        # Take the write lock at BEGIN: a transaction that reads then writes can then never deadlock.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_engine(url: str | None = None) -> Engine:
    """An engine on ``url`` (default: :func:`database_url`) with the schema at the latest migration."""
    from alembic import command
    from alembic.config import Config

    url = url or database_url()
    engine = _sqlite_engine(url) if url.startswith("sqlite") else create_engine(url, pool_pre_ping=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if url.startswith("postgresql"):
            # Processes opening a new database at once would race to create the tables.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7210531)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return engine
