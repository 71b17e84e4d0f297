"""The test databases themselves: each backend gives a fresh, working database, and PostgreSQL ones are dropped."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from tests.registry import databases
from tests.registry.databases import DATABASE_BACKENDS, fresh_database, postgres_server_url


def server_database_names() -> set[str]:
    server = make_url(postgres_server_url()).set(drivername="postgresql")
    with psycopg.connect(server.render_as_string(hide_password=False)) as connection:
        return {name for (name,) in connection.execute("SELECT datname FROM pg_database")}


@pytest.mark.parametrize("backend", DATABASE_BACKENDS)
def test_a_fresh_database_stores_and_reads_a_row(backend, tmp_path):
    probes = sqlalchemy.MetaData()
    probe = sqlalchemy.Table(
        "probe",
        probes,
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("name", sqlalchemy.String(50), nullable=False),
    )
    with fresh_database(backend, tmp_path) as url, fresh_database(backend, tmp_path) as other_url:
        assert url != other_url
        engine = sqlalchemy.create_engine(url)
        assert engine.dialect.name == backend
        with engine.begin() as connection:
            assert sqlalchemy.inspect(connection).get_table_names() == []
            probes.create_all(connection)
            connection.execute(probe.insert().values(id=1, name="abalone"))
        # Left open on purpose: the drop on exit must not wait for (or fail on) a client still connected.
        still_connected = engine.connect()
        assert still_connected.execute(sqlalchemy.select(probe.c.name)).scalar_one() == "abalone"
    still_connected.invalidate()
    engine.dispose()

    if backend == "postgresql":
        leftovers = {make_url(url).database, make_url(other_url).database} & server_database_names()
        assert leftovers == set()


def test_without_a_server_url_ci_fails_with_what_to_do(monkeypatch):
    monkeypatch.delenv(databases.POSTGRES_URL_VARIABLE, raising=False)
    monkeypatch.setenv("CI", "1")
    postgres_server_url.cache_clear()
    try:
        with pytest.raises(pytest.fail.Exception) as failure:
            postgres_server_url()
    finally:
        postgres_server_url.cache_clear()
    assert "scripts/setup-postgres.sh" in str(failure.value)
    assert f"export {databases.POSTGRES_URL_VARIABLE}" in str(failure.value)
