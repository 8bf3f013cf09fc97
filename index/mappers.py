"""Trained latent mappers kept in the atlas: `mappers/<name>.pt` + `mappers/<name>.json`, and a `mappers` catalog table.

The JSON record beside each mapper file is the source of truth (written atomically after the file); the
catalog table is rebuilt from the records whenever a mapper is added, so SQL sees them too and a rebuilt
catalog gets them back on the next write (or `sync_catalog`). The catalog is changed in a copy that replaces
it, and MANIFEST.json's size and sha256 of it are updated, so the atlas still verifies on open.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

from index.io import write_json_atomic
from index.layout import CATALOG, MANIFEST
from index.verify import sha256_file
from models.errors import AtlasFormatError
from models.files import atomic_path

MAPPERS_DIR = "mappers"
RECORD_KEYS = (
    "prompt",
    "file",
    "sha256",
    "steps",
    "batch_size",
    "loss_clip",
    "loss_l2",
    "loss_id",
    "loss_total",
    "generator_fingerprint",
    "clip_fingerprint",
    "created",
    "settings",
)
SCHEMA = """CREATE TABLE IF NOT EXISTS mappers (prompt VARCHAR, file VARCHAR, sha256 VARCHAR, steps INTEGER,
    batch_size INTEGER, loss_clip DOUBLE, loss_l2 DOUBLE, loss_id DOUBLE, loss_total DOUBLE,
    generator_fingerprint VARCHAR, clip_fingerprint VARCHAR, created VARCHAR, settings JSON)"""


def prompt_key(prompt: str) -> str:
    """How prompts are matched: lowercase, whitespace collapsed (CLIP's tokenizer sees these the same)."""
    return " ".join(str(prompt).split()).lower()


def mapper_name(prompt: str) -> str:
    """A file stem for a prompt: its readable part and a short hash of its key ('red-1b6453892473')."""
    key = prompt_key(prompt)
    readable = re.sub(r"[^a-z0-9]+", "-", key).strip("-")[:40] or "prompt"
    return f"{readable}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}"


def mapper_path(out_dir, prompt: str) -> Path:
    return Path(out_dir) / MAPPERS_DIR / f"{mapper_name(prompt)}.pt"


def add_mapper_record(out_dir, prompt: str, info: dict) -> dict:
    """Record the mapper file already written at mapper_path(out_dir, prompt); returns the record."""
    path = mapper_path(out_dir, prompt)
    if not path.is_file():
        raise AtlasFormatError(f"no mapper file at {path}; save the mapper there first.")
    losses = info.get("final_losses") or {}
    record = dict(
        prompt=prompt,
        file=f"{MAPPERS_DIR}/{path.name}",
        sha256=sha256_file(path),
        steps=int(info.get("steps", 0)),
        batch_size=int(info.get("batch_size", 0)),
        loss_clip=losses.get("clip"),
        loss_l2=losses.get("l2"),
        loss_id=losses.get("id"),
        loss_total=losses.get("total"),
        generator_fingerprint=info.get("generator_fingerprint"),
        clip_fingerprint=info.get("clip_fingerprint"),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        settings={k: v for k, v in info.items() if k not in RECORD_KEYS and k not in ("history", "final_losses")},
    )
    write_json_atomic(path.with_suffix(".json"), record)
    sync_catalog(out_dir)
    return record


def list_mappers(out_dir) -> list[dict]:
    """Every mapper record of the atlas (sorted by prompt); a record whose file is gone is skipped."""
    folder = Path(out_dir) / MAPPERS_DIR
    records = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if p.name.startswith(".tmp-"):
            continue
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable record: not a mapper this atlas can use
        if isinstance(record, dict) and (Path(out_dir) / str(record.get("file", ""))).is_file():
            records.append(record)
    return sorted(records, key=lambda r: prompt_key(r.get("prompt", "")))


def find_mapper(out_dir, prompt: str) -> dict | None:
    """The record of the mapper trained for `prompt` (matched by prompt_key), or None."""
    key = prompt_key(prompt)
    return next((r for r in list_mappers(out_dir) if prompt_key(r.get("prompt", "")) == key), None)


def sync_catalog(out_dir) -> None:
    """Rewrite the catalog's `mappers` table from the records (no catalog yet: nothing to do)."""
    import duckdb

    path = Path(out_dir) / CATALOG
    if not path.exists():
        return
    with atomic_path(path, suffix=".duckdb") as tmp:
        shutil.copyfile(path, tmp)
        try:
            con = duckdb.connect(str(tmp))
        except duckdb.Error as exc:
            raise AtlasFormatError(
                f"cannot update the mappers table of {path} ({str(exc).splitlines()[0][:120]}); "
                "run the build command again to rewrite the catalog."
            ) from None
        try:
            con.execute("BEGIN")
            fill_mappers(con, out_dir)
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()
    _update_manifest(Path(out_dir))


def fill_mappers(con, out_dir) -> None:
    """(Re)create the `mappers` table on an open catalog connection from the atlas's mapper records."""
    rows = [
        tuple(json.dumps(r.get(k), sort_keys=True) if k == "settings" else r.get(k) for k in RECORD_KEYS)
        for r in list_mappers(out_dir)
    ]
    con.execute(SCHEMA)
    con.execute("DELETE FROM mappers")
    if rows:
        con.executemany(f"INSERT INTO mappers VALUES ({', '.join('?' * len(RECORD_KEYS))})", rows)


def _update_manifest(out_dir: Path) -> None:
    """Record the new catalog's size and sha256 in MANIFEST.json (when the build listed it there)."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return
    manifest = json.loads(path.read_text(encoding="utf-8"))
    catalog = out_dir / CATALOG
    if isinstance(manifest.get("files"), dict) and CATALOG in manifest["files"]:
        manifest["files"][CATALOG] = catalog.stat().st_size
    if isinstance(manifest.get("sha256"), dict) and CATALOG in manifest["sha256"]:
        manifest["sha256"][CATALOG] = sha256_file(catalog)
    write_json_atomic(path, manifest)
