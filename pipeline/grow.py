"""add_vocabulary: grow a finished atlas's vocabulary without rebuilding it.

New phrases are embedded with the atlas's own templates (SPEC §4) by the CLIP it was built with (checked by
fingerprint); the vocabulary arrays, channel labels, the FAISS vocabulary index and the catalog are rewritten;
relevance, statistics and relevance.faiss are left as they are. The grown atlas is the one a build with the
larger vocabulary from the start writes.

Crash safety: everything is written into a staging folder beside the atlas (`.<name>.grow/`), then the
staged folder and the atlas are exchanged in one step (index/swap.py), so a reader sees the old atlas or
the grown one, never a mix. A killed run leaves the old atlas untouched; running it again reuses the phrase
chunks already embedded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import index
from index import (
    ATLAS_FILE,
    CATALOG,
    MANIFEST,
    VOCAB_INDEX,
    AtlasData,
    have_faiss,
    read_atlas,
    write_atlas,
    write_catalog,
)
from index.io import remove_stray_temps, write_json_atomic, write_npz_atomic
from index.swap import finish_swap, swap_folder
from index.work import BuildLock, neutral_path
from models.errors import AtlasError
from pipeline import vocabulary as vocab_stage
from pipeline.assemble import write_ip_index, write_manifest
from pipeline.common import chunk_ranges
from pipeline.config import IndexConfig, VocabularyConfig, vocabulary_entries
from pipeline.labels import compute_labels

STAGING_PLAN = "grow.json"
REWRITTEN = (ATLAS_FILE, VOCAB_INDEX, CATALOG, MANIFEST)  # the rest of the folder (relevance.faiss ...) is linked over


@dataclass
class GrowReport:
    """What add_vocabulary did (the CLI prints it; --json returns it)."""

    path: Path
    status: str  # "grown", "nothing to add"
    added: list = field(default_factory=list)  # phrases new to the atlas, in vocabulary order
    already: int = 0  # given phrases the vocabulary already held
    vocabulary: int = 0  # vocabulary size after
    texts_encoded: int = 0  # in this run (chunks a killed run finished are reused)
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        return d


def staging_root(out_dir: Path) -> Path:
    """Where a growing atlas is staged: a hidden sibling of the atlas folder (same filesystem, so the swap is a
    rename)."""
    return out_dir.parent / f".{out_dir.name}.grow"


def _base_id(out_dir: Path) -> str:
    """Identifies the atlas being grown (its manifest and atlas.h5), so stale staging is never reused."""
    h = hashlib.sha256((out_dir / MANIFEST).read_bytes())
    st = (out_dir / ATLAS_FILE).stat()
    h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


STAGED = (STAGING_PLAN, "work", "atlas", "old")  # what a staging folder may hold (work/: chunks and .lock)


def _check_staging(root: Path) -> None:
    """AtlasError when the staging folder holds anything add_vocabulary does not write (never delete that)."""
    if root.exists():
        foreign = [
            p.name for p in root.iterdir() if p.name not in STAGED and not p.name.startswith(f".tmp-{STAGING_PLAN}.")
        ]
        if foreign:
            raise AtlasError(
                f"{root} holds {foreign[0]!r}, which add-vocabulary did not write; move it away and run again."
            )


def _clear_staging(root: Path) -> None:
    """Drop a finished or outdated run's staging (the lock in work/ stays: we hold it)."""
    for name in ("atlas", "old", "work/vocabulary", STAGING_PLAN):
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    remove_stray_temps(root, names=(STAGING_PLAN,))


def _prepare_staging(root: Path, plan: dict) -> None:
    """The staging folder for `plan`: reused when a killed run left it for the same atlas and phrases."""
    try:
        old = json.loads((root / STAGING_PLAN).read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        old = None
    if old != plan:
        _clear_staging(root)
        write_json_atomic(root / STAGING_PLAN, plan)


def _new_phrases(data: AtlasData, phrases) -> tuple[list[str], int, list]:
    """(phrases new to the vocabulary in order, how many given were already there, the selectors as entries).

    The old vocabulary and the new selectors are resolved together, as a build with both would resolve them, so
    the same spellings are merged (vocabulary.resolve's rule) and the order is the one that build gets.
    """
    entries = list(vocabulary_entries(phrases))
    english_size = int(data.config.get("vocabulary", {}).get("english_size", 10_000))
    given = vocab_stage.resolve(entries, english_size, data.neutral)
    merged = vocab_stage.resolve([tuple(data.vocab)] + entries, english_size, data.neutral)
    if merged[: len(data.vocab)] != list(data.vocab):
        raise AtlasError(
            f"the vocabulary of {data.path} does not resolve to itself (made by another StyleAtlas "
            "version?); rebuild the atlas with the larger vocabulary instead."
        )
    new = merged[len(data.vocab) :]
    return new, len(given) - len(new), entries


def add_vocabulary(
    out_dir, embedder, phrases, *, progress: bool = False, check_fingerprints: bool = True, device=None
) -> GrowReport:
    """Embed `phrases` (a list, a phrase file, or selectors such as "faces") into the atlas at `out_dir`.

    device: where the embedder runs is its own business; a CUDA device also builds the FAISS index on GPUs.

    Refuses an embedder other than the atlas's CLIP (fingerprint). Returns a GrowReport; the atlas on disk is
    replaced in one step at the end, so a crash at any point leaves the old atlas as it was.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir).expanduser().resolve()
    root = staging_root(out_dir)
    _check_staging(root)
    root.mkdir(exist_ok=True)
    with BuildLock(root):  # one add-vocabulary per atlas at a time (work/.lock in the staging folder)
        try:
            report = _grow(out_dir, root, embedder, phrases, progress, check_fingerprints, device)
        except BaseException:
            _remove_if_empty(root)
            raise
    _remove_if_empty(root)
    report.seconds["total"] = time.perf_counter() - t_start
    return report


def _remove_if_empty(root: Path) -> None:
    with contextlib.suppress(OSError):
        root.rmdir()


def _grow(out_dir: Path, root: Path, embedder, phrases, progress: bool, check_fingerprints: bool, device) -> GrowReport:
    finish_swap(out_dir, root / "atlas", root / "old")  # a two-rename swap a crash cut in half
    data = read_atlas(out_dir)
    if check_fingerprints:
        index.check_fingerprints(data, embedder=embedder)
    new, already, entries = _new_phrases(data, phrases)
    report = GrowReport(path=out_dir, status="nothing to add", already=already, vocabulary=len(data.vocab))
    if not new:
        _clear_staging(root)
        return report
    cfg_dict = {k: v for k, v in data.config.get("vocabulary", {}).items() if k in VocabularyConfig.__annotations__}
    vocab_cfg = VocabularyConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg_dict.items()})
    plan = dict(
        base=_base_id(out_dir),
        phrases=new,
        embedder_fingerprint=data.embedder_fingerprint,
        chunk_phrases=vocab_cfg.chunk_phrases,
    )
    _prepare_staging(root, plan)

    t0 = time.perf_counter()
    if not neutral_path(root).exists():  # the atlas's own t(neutral): nothing to encode
        write_npz_atomic(neutral_path(root), embedding=np.asarray(data.neutral_embedding, np.float32))
    chunks = list(range(len(chunk_ranges(len(new), vocab_cfg.chunk_phrases))))
    report.texts_encoded = vocab_stage.run(
        embedder, new, data.templates, data.neutral, vocab_cfg, root, chunks, progress
    )
    added_emb, _ = vocab_stage.load(root, len(new), vocab_cfg)  # [n, D]
    report.seconds["embed"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    grown = _grown_data(data, new, added_emb, entries, root / "atlas")
    _stage_atlas(out_dir, grown, IndexConfig(**data.config.get("index", {})), device)
    report.seconds["stage"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    swap_folder(out_dir, root / "atlas", root / "old")
    _clear_staging(root)
    report.seconds["swap"] = time.perf_counter() - t0
    report.status, report.added, report.vocabulary = "grown", new, len(grown.vocab)
    return report


def _grown_data(data: AtlasData, new: list[str], added_emb: np.ndarray, entries: list, path: Path) -> AtlasData:
    """The atlas arrays with the larger vocabulary: phrases, embeddings, labels, config; the rest as it was."""
    vocab_emb = np.concatenate([data.vocab_embeddings, added_emb.astype(np.float32)])  # [V + n, D]
    k = int(data.config.get("labels", {}).get("k", data.labels_index.shape[1] if data.labels_index.ndim == 2 else 10))
    labels_index, labels_score = compute_labels(data.relevance, vocab_emb, data.neutral_embedding, k)
    config = json.loads(json.dumps(data.config))
    described = config.setdefault("vocabulary", {}).get("vocabulary", [])
    config["vocabulary"]["vocabulary"] = list(described) + vocab_stage.describe(entries)
    extra = json.loads(json.dumps(data.extra))
    fields = {f: getattr(data, f) for f in data.__dataclass_fields__}
    fields.update(
        path=path,
        vocab=list(data.vocab) + list(new),
        vocab_embeddings=vocab_emb,
        labels_index=labels_index,
        labels_score=labels_score,
        config=config,
        extra=extra,
    )
    return AtlasData(**fields)


def _stage_atlas(out_dir: Path, grown: AtlasData, index_cfg: IndexConfig, device=None) -> None:
    """Write the grown atlas into grown.path: new arrays, indexes and catalog; everything else linked over."""
    stage = Path(grown.path)
    if stage.exists():  # a killed run's half-written staging: rewrite it whole
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for entry in out_dir.iterdir():  # relevance.faiss, and anything else the folder holds (e.g. a kept work/)
        if entry.name not in REWRITTEN and not entry.name.startswith(".tmp-"):
            _link_tree(entry, stage / entry.name)
    if have_faiss() and isinstance(grown.extra.get("indexes"), dict):
        grown.extra["indexes"]["vocabulary"] = write_ip_index(
            grown.vocab_embeddings, index_cfg, stage / VOCAB_INDEX, device
        )
    write_atlas(grown)
    write_catalog(grown)
    write_manifest(stage, grown)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link a file (copy where links are not possible), or a folder of them, from the old atlas."""
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)
