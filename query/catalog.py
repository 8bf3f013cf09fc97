"""Read-only SQL over an atlas's DuckDB catalog (tables: layers, channels, vocabulary, labels, builds).

The text people type is data, not trusted code: exactly one read statement runs, on a read-only connection
with file system access, extension installs and configuration changes off, and it is interrupted after a
time limit, so `sql` can neither read other files, write any file, download anything, nor run forever.
"""

from __future__ import annotations

import decimal
import re
import threading

import index
from models.errors import AtlasError

MAX_LIMIT = 100_000  # rows `sql` returns at most, whatever --limit asks
DEFAULT_TIMEOUT_S = 30.0  # a query still running after this is interrupted
_READ_TYPES = ("SELECT", "CALL", "EXPLAIN")  # duckdb StatementType names we run (SELECT covers DESCRIBE, SHOW ...)
_COMMENT = re.compile(r"(--[^\n]*\n?|/\*.*?\*/)", re.S)
_EXAMPLE = "SELECT * FROM channels ORDER BY consistency DESC LIMIT 10"


def check_limit(limit) -> int:
    """--limit as an int in [0, MAX_LIMIT] (AtlasError otherwise)."""
    try:
        limit = int(limit)
    except (TypeError, ValueError, OverflowError):
        raise AtlasError(f"limit must be a whole number of rows, got {limit!r}.") from None
    if not 0 <= limit <= MAX_LIMIT:
        raise AtlasError(
            f"limit must be between 0 and {MAX_LIMIT:,} rows, got {limit}; aggregate in SQL or use "
            "LIMIT/OFFSET to page through more."
        )
    return limit


def read_statement(con, query: str) -> str:
    """The one read statement of `query` (comments stripped); AtlasError for none, several, or a write."""
    import duckdb

    text = _COMMENT.sub(" ", query or "").strip()
    if not text.strip("; \t\r\n"):
        raise AtlasError(f"the SQL query is empty; try: {_EXAMPLE}.")
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as exc:
        raise AtlasError(
            f"SQL error: {_first_line(exc)} (tables: layers, channels, vocabulary, labels, builds)."
        ) from None
    if len(statements) != 1:
        raise AtlasError(
            f"sql runs exactly one statement and this text holds {len(statements)}; the catalog is "
            f"read-only, run one query such as {_EXAMPLE}."
        )
    kind = statements[0].type.name
    words = text.split(None, 2)
    if kind not in _READ_TYPES or (kind == "EXPLAIN" and len(words) > 1 and words[1].lower() in ("analyze", "analyse")):
        shown = " ".join(words[:2]).upper() if kind == "EXPLAIN" else kind
        raise AtlasError(
            f"the catalog is read-only and sql runs only queries, not {shown} (which could run or "
            f"write something); run a query such as {_EXAMPLE}."
        )
    return text


def run_sql(
    out_dir, query: str, limit: int = 1000, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[list[str], list[tuple]]:
    """(column names, up to `limit` rows) of one read-only `query`; anything else is a one-line AtlasError."""
    import duckdb

    limit = check_limit(limit)
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s <= 24 * 3600):
        raise AtlasError(f"the SQL time limit must be a positive number of seconds, got {timeout_s!r}.")
    con = index.open_catalog(out_dir, read_only=True)
    timed_out = threading.Event()

    def stop():
        timed_out.set()
        con.interrupt()

    timer = threading.Timer(float(timeout_s), stop)
    try:
        text = read_statement(con, query)
        timer.start()
        cur = con.execute(text)
        if cur.description is None:
            return [], []
        columns = [c[0] for c in cur.description]
        rows = cur.fetchmany(limit) if limit else []
    except duckdb.InterruptException:
        if not timed_out.is_set():
            raise AtlasError("the query was interrupted (Ctrl-C); nothing was changed.") from None
        raise AtlasError(
            f"the query ran longer than {timeout_s:g} s and was stopped; add a LIMIT or a WHERE, or "
            "aggregate over fewer rows."
        ) from None
    except duckdb.PermissionException:
        raise AtlasError(
            "sql reads only the atlas's own tables (layers, channels, vocabulary, labels, builds); "
            "reading or writing other files, and installing extensions, are switched off."
        ) from None
    except duckdb.Error as exc:
        message = _first_line(exc)
        if "read-only" in message.lower() or "read only" in message.lower():
            raise AtlasError("the catalog is read-only; sql runs queries (SELECT ...), not changes.") from None
        raise AtlasError(f"SQL error: {message} (tables: layers, channels, vocabulary, labels, builds).") from None
    except KeyboardInterrupt:
        con.interrupt()
        raise AtlasError("the query was interrupted (Ctrl-C); nothing was changed.") from None
    except RuntimeError as exc:  # duckdb's answer to a SIGINT (Ctrl-C) while it runs
        if "interrupt" not in str(exc).lower():
            raise
        raise AtlasError("the query was interrupted (Ctrl-C); nothing was changed.") from None
    finally:
        timer.cancel()
        con.close()
    return columns, [tuple(_plain(v) for v in r) for r in rows]


def _first_line(exc) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def _plain(v):
    """JSON-friendly cell values (DuckDB returns Decimals, dates, numpy scalars for some types)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v)
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)
