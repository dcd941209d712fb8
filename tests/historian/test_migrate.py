"""Migrations: applied in order, once, on both backends; edited ones refused."""

from pathlib import Path

import psycopg
import pytest

from historian import HistorianError
from historian.db import backend as detect_backend
from historian.migrate import SQL_DIR, discover, migrate
from tests.historian.helpers import scalar


async def test_second_run_is_a_noop(conn, backend):
    assert await migrate(conn) == []
    assert await detect_backend(conn) == backend
    versions = await scalar(conn, "SELECT array_agg(version ORDER BY version) FROM schema_migrations")
    assert versions == [m.version for m in discover()]


async def test_tables_are_hypertables_or_partitioned(conn, backend):
    if backend == "timescaledb":
        names = await scalar(conn, "SELECT array_agg(hypertable_name::text ORDER BY hypertable_name) FROM timescaledb_information.hypertables")
        assert {"events", "samples"} <= set(names)  # other modules' migrations may add their own
    else:
        kinds = await scalar(conn, "SELECT array_agg(relkind::text ORDER BY relname) FROM pg_class WHERE relname IN ('samples', 'events')")
        assert kinds == ["p", "p"]


async def test_edited_migration_is_refused(conn, tmp_path: Path):
    for m in discover():
        (tmp_path / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    first = sorted(tmp_path.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(HistorianError, match="changed after it was applied"):
        await migrate(conn, tmp_path)


def test_gap_in_versions_is_refused(tmp_path: Path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(HistorianError, match="expected migration 0002"):
        discover(tmp_path)


def test_sql_dir_is_the_repositorys():
    assert (SQL_DIR / "0001_historian.sql").exists()


async def test_time_bucket_and_first_last_run_on_both(conn):
    b = await scalar(conn, "SELECT time_bucket(interval '15 minutes', timestamptz '2026-11-20 08:37:12+00')")
    assert b.isoformat() == "2026-11-20T08:30:00+00:00"
    first = await scalar(
        conn,
        "SELECT first(v, t) FROM (VALUES (2.0, timestamptz '2026-01-02'), (1.0, timestamptz '2026-01-01'), (3.0, timestamptz '2026-01-03')) x(v, t)",
    )
    last = await scalar(
        conn,
        "SELECT last(v, t) FROM (VALUES (2.0::float8, timestamptz '2026-01-02'), (1.0, timestamptz '2026-01-01'), (3.0, timestamptz '2026-01-03')) x(v, t)",
    )
    assert (first, last) == (1.0, 3.0)


async def test_a_failing_migration_leaves_no_trace(conn, tmp_path: Path):
    for m in discover():
        (tmp_path / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    n = len(discover()) + 1
    # it creates a table, adds a column to a real one, inserts a row, then fails half-way
    (tmp_path / f"{n:04d}_half_done.sql").write_text(
        "CREATE TABLE sf_half_done (id int);\n"
        "ALTER TABLE machines ADD COLUMN sf_half_done int;\n"
        "INSERT INTO machines (name) VALUES ('sf-half-done');\n"
        "SELECT 1 / 0;\n"
    )
    before = await scalar(conn, "SELECT count(*) FROM schema_migrations")
    with pytest.raises(Exception, match="division by zero"):
        await migrate(conn, tmp_path)
    assert await scalar(conn, "SELECT to_regclass('sf_half_done')") is None
    assert await scalar(
        conn, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'machines' AND column_name = 'sf_half_done'"
    ) == 0
    assert await scalar(conn, "SELECT count(*) FROM machines WHERE name = 'sf-half-done'") == 0
    assert await scalar(conn, "SELECT count(*) FROM schema_migrations") == before
    # fixed, it applies on the next run: the failure left nothing that gets in its way
    (tmp_path / f"{n:04d}_half_done.sql").write_text("CREATE TABLE sf_half_done (id int);\n")
    assert await migrate(conn, tmp_path) == [f"{n:04d}_half_done"]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO machines (name) VALUES ('sf-reader')",
        "UPDATE tags SET unit = 'x'",
        "DELETE FROM samples",
        "TRUNCATE dead_letters",
        "CREATE TABLE sf_reader_made (id int)",
        "ALTER TABLE machines ADD COLUMN sf_reader int",
        "DROP TABLE dead_letters",
        "CREATE INDEX sf_reader_ix ON machines (name)",
    ],
)
async def test_the_reader_role_reads_and_changes_nothing(conn, statement: str):
    await conn.execute("INSERT INTO machines (name) VALUES ('sf-visible')")
    await conn.set_autocommit(False)
    try:
        await conn.execute("SET LOCAL ROLE shopfloor_reader")
        # it reads tables and views
        assert await scalar(conn, "SELECT count(*) FROM machines WHERE name = 'sf-visible'") == 1
        await scalar(conn, "SELECT count(*) FROM samples_named")
        await conn.execute("SAVEPOINT attempt")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(statement)
        await conn.execute("ROLLBACK TO SAVEPOINT attempt")
    finally:
        await conn.rollback()
        await conn.set_autocommit(True)
