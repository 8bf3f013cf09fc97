"""catalog.duckdb: the atlas as SQL tables (layers, channels, vocabulary, labels, builds) for people to query."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from index.atlas import AtlasData
from index.layout import CATALOG
from index.mappers import fill_mappers
from models.errors import AtlasFormatError
from models.files import atomic_path
from models.stylespace import layer_offsets

SCHEMA = """
CREATE TABLE layers (layer INTEGER PRIMARY KEY, kind VARCHAR, resolution INTEGER, width INTEGER,
                     w_index INTEGER, in_atlas BOOLEAN, style_offset INTEGER);
CREATE TABLE channels ("row" INTEGER PRIMARY KEY, layer INTEGER, channel INTEGER, style_mean DOUBLE,
                       style_std DOUBLE, consistency REAL, top_label VARCHAR, top_score REAL);
CREATE TABLE vocabulary (id INTEGER PRIMARY KEY, phrase VARCHAR);
CREATE TABLE labels ("row" INTEGER, layer INTEGER, channel INTEGER, rank INTEGER, vocab_id INTEGER,
                     phrase VARCHAR, score REAL);
CREATE TABLE builds (build_id INTEGER, created VARCHAR, generator_fingerprint VARCHAR,
                     embedder_fingerprint VARCHAR, num_channels INTEGER, dim INTEGER, vocabulary_size INTEGER,
                     neutral VARCHAR, config JSON, extra JSON, models JSON);
"""


def catalog_path(out_dir) -> Path:
    return Path(out_dir) / CATALOG


def write_catalog(data: AtlasData) -> Path:
    """Write catalog.duckdb for `data` atomically (built in a temp file, then renamed)."""
    import duckdb

    path = catalog_path(data.path)
    with atomic_path(path, suffix=".duckdb") as tmp:
        tmp.unlink()  # duckdb refuses to open an empty file as a database
        con = duckdb.connect(str(tmp))
        try:
            con.execute("BEGIN")
            for stmt in SCHEMA.strip().split(";"):
                if stmt.strip():
                    con.execute(stmt)
            _fill(con, data)
            fill_mappers(con, data.path)  # a rewritten catalog (repair, add-vocabulary) keeps the mappers table
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()
    return path


def _fill(con, data: AtlasData) -> None:
    """Insert every table from numpy columns (duckdb scans a registered dict of arrays: 10^6 rows/s)."""
    layers = data.layers
    _insert(
        con,
        "layers",
        dict(
            layer=np.array([l["index"] for l in layers], np.int64),
            kind=_strings([l["kind"] for l in layers]),
            resolution=np.array([l["resolution"] for l in layers], np.int64),
            width=np.array([l["width"] for l in layers], np.int64),
            w_index=np.array([l["w_index"] for l in layers], np.int64),
            in_atlas=np.array([bool(l["in_atlas"]) for l in layers]),
            style_offset=layer_offsets(layers)[:-1],
        ),
    )
    C = len(data.channels)
    li, ls = data.labels_index, data.labels_score  # [C, k]
    k = li.shape[1] if li.ndim == 2 else 0
    has_top = (li[:, 0] >= 0) if k else np.zeros(C, bool)
    _insert(
        con,
        "channels",
        dict(
            row=np.arange(C, dtype=np.int64),
            layer=data.channels[:, 0],
            channel=data.channels[:, 1],
            style_mean=data.style_mean,
            style_std=data.style_std,
            consistency=data.consistency,
            top_label=_strings([data.vocab[li[r, 0]] if has_top[r] else None for r in range(C)]),
            top_score=np.where(has_top, ls[:, 0] if k else 0, np.nan).astype(np.float32),
        ),
    )
    _insert(con, "vocabulary", dict(id=np.arange(len(data.vocab), dtype=np.int64), phrase=_strings(data.vocab)))
    rows, ranks = np.nonzero(li >= 0) if k else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    vid = li[rows, ranks]
    _insert(
        con,
        "labels",
        dict(
            row=rows.astype(np.int64),
            layer=data.channels[rows, 0],
            channel=data.channels[rows, 1],
            rank=ranks.astype(np.int64),
            vocab_id=vid,
            phrase=_strings([data.vocab[v] for v in vid]),
            score=ls[rows, ranks].astype(np.float32),
        ),
    )
    con.execute(
        "INSERT INTO builds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            1,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            data.generator_fingerprint,
            data.embedder_fingerprint,
            C,
            data.dim,
            len(data.vocab),
            data.neutral,
            json.dumps(data.config, sort_keys=True),
            json.dumps(data.extra, sort_keys=True),
            json.dumps(data.models, sort_keys=True),
        ),
    )


def _strings(values) -> np.ndarray:
    return np.array(list(values), dtype=object)


def _insert(con, table: str, columns: dict) -> None:
    con.register("_src", columns)
    try:
        names = ", ".join(f'"{c}"' for c in columns)
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _src")
    finally:
        con.unregister("_src")


# a read-only catalog connection reaches no other file, installs and loads no extension, and keeps these settings
SAFE_CONFIG = dict(
    enable_external_access=False,
    autoinstall_known_extensions=False,
    autoload_known_extensions=False,
    lock_configuration=True,
)


def open_catalog(out_dir, read_only: bool = True):
    """A duckdb connection to the atlas catalog (read-only by default): `con.sql("SELECT ...")`.

    Read-only connections are sandboxed (SAFE_CONFIG): queries see the atlas tables and nothing else.
    """
    import duckdb

    path = catalog_path(out_dir)
    if not path.exists():
        raise AtlasFormatError(f"atlas {out_dir} has no catalog.duckdb; run the build command again to rebuild it.")
    try:
        return duckdb.connect(str(path), read_only=read_only, config=SAFE_CONFIG if read_only else {})
    except duckdb.Error as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        if "lock" in detail.lower():
            raise AtlasFormatError(
                f"{path} is locked by another process ({detail}); close that program and try again."
            ) from None
        raise AtlasFormatError(
            f"{path} is not a readable DuckDB catalog ({detail}); delete it and run the build "
            "command again to rewrite it."
        ) from None
