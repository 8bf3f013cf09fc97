"""Issue 9 item 1: `sql` runs exactly one read-only statement, sees no other file, writes nothing, stops."""

import os

import pytest
from helpers import query_error

from models.errors import AtlasError
from query.catalog import run_sql

MAX_LIMIT = 100_000  # query.catalog.MAX_LIMIT


@pytest.fixture(scope="module")
def world(shared_world):
    """The session's tiny world (conftest): copy the atlas before changing anything in it."""
    return shared_world


@pytest.mark.parametrize(
    "statement, says",
    [
        ("SELECT content FROM read_blob('/etc/passwd')", "other files"),
        ("SELECT * FROM read_csv('/etc/passwd', header=false)", "other files"),
        ("SELECT file FROM glob('/etc/host*')", "other files"),
        ("EXPLAIN ANALYZE COPY (SELECT 7 AS y) TO 'x.csv'", "EXPLAIN ANALYZE"),
        ("SELECT 1; COPY (SELECT 42 AS x) TO 'y.csv'", "exactly one statement"),
        ("SELECT 1; INSTALL httpfs", "exactly one statement"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        # refused on main too (first word); kept as regression checks
        ("COPY (SELECT 42 AS x) TO 'atlas.h5'", "read-only"),
        ("LOAD httpfs", "read-only"),
        ("SET threads = 1", "read-only"),
        ("ATTACH 'other.db' AS o", "read-only"),
    ],
)
def test_sql_refuses_files_writes_extensions_and_several_statements(world, tmp_path, statement, says, capsys):
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        before = {p.name: p.stat().st_size for p in world["atlas"].iterdir()}
        err = query_error(capsys, "sql", statement, "--atlas", str(world["atlas"]))
        assert says in err
        assert "root:" not in err
        assert list(tmp_path.iterdir()) == []  # nothing written where we stand
        assert {p.name: p.stat().st_size for p in world["atlas"].iterdir()} == before
    finally:
        os.chdir(old)


def test_sql_reads_still_work(world):
    for query in (
        "(SELECT 1 AS one)",
        "CALL pragma_version()",
        "EXPLAIN SELECT * FROM channels",
        "SHOW TABLES",
        "DESCRIBE channels",
        "SELECT 1; -- trailing comment",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
    ):
        columns, rows = run_sql(world["atlas"], query)
        assert columns and rows, query


def test_sql_stops_runaway_queries_and_caps_limit(world, capsys):
    with pytest.raises(AtlasError, match="longer than"):
        run_sql(world["atlas"], "SELECT count(*) FROM range(1000000000000)", timeout_s=0.5)
    err = query_error(
        capsys, "sql", "SELECT count(*) FROM range(1000000000000)", "--timeout", "0.5", "--atlas", str(world["atlas"])
    )
    assert "0.5 s" in err
    assert str(f"{MAX_LIMIT:,}") in query_error(
        capsys, "sql", "SELECT 1", "--limit", str(MAX_LIMIT + 1), "--atlas", str(world["atlas"])
    )
    assert "limit" in query_error(capsys, "sql", "SELECT 1", "--limit", "-3", "--atlas", str(world["atlas"]))


def test_sql_on_garbage_or_missing_catalog_is_one_line(world, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(world["atlas"], bad)
    (bad / "catalog.duckdb").write_bytes(b"not a database at all" * 100)
    err = query_error(capsys, "sql", "SELECT 1", "--atlas", str(bad))
    assert "catalog.duckdb" in err
