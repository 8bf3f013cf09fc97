"""Read-only SQL over an atlas's DuckDB catalog (tables: layers, channels, vocabulary, labels, builds)."""
from __future__ import annotations

import re

import index
from models.errors import AtlasError

_READS = ("select", "with", "describe", "show", "explain", "summarize", "from", "values", "pragma", "table")
_COMMENT = re.compile(r"(--[^\n]*\n?|/\*.*?\*/)", re.S)


def run_sql(out_dir, query: str, limit: int = 1000) -> tuple[list[str], list[tuple]]:
    """(column names, up to `limit` rows) of `query`; writes are refused with a one-line AtlasError."""
    import duckdb

    text = _COMMENT.sub(" ", query or "").strip()
    if not text:
        raise AtlasError("the SQL query is empty; try: SELECT * FROM channels LIMIT 5.")
    first = text.split(None, 1)[0].lower().rstrip(";(")
    if first not in _READS:
        raise AtlasError(f"the catalog is read-only and {first.upper()} would change it; run a query such as "
                         "SELECT * FROM channels ORDER BY consistency DESC LIMIT 10.")
    con = index.open_catalog(out_dir, read_only=True)
    try:
        cur = con.execute(query)
        if cur.description is None:
            return [], []
        columns = [c[0] for c in cur.description]
        rows = cur.fetchmany(max(int(limit), 0))
    except duckdb.Error as exc:
        message = str(exc).strip().splitlines()[0][:200]
        if "read-only" in message.lower() or "read only" in message.lower():
            raise AtlasError("the catalog is read-only; sql runs queries (SELECT ...), not changes.") from None
        raise AtlasError(f"SQL error: {message} (tables: layers, channels, vocabulary, labels, builds).") from None
    finally:
        con.close()
    return columns, [tuple(_plain(v) for v in r) for r in rows]


def _plain(v):
    """JSON-friendly cell values (DuckDB returns Decimals, dates, numpy scalars for some types)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)
