"""Assemble a finished work folder into the atlas: labels, atlas.h5, FAISS indexes, catalog, MANIFEST.json.

Needs no model: everything comes from work/ (plan.json and the chunk files), so `styleatlas-build merge`
can run on any machine after a sharded build. Each output is written atomically; MANIFEST.json is written
last, so an atlas without it is known to be unfinished.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from index import (
    ATLAS_FILE,
    CATALOG,
    MANIFEST,
    RELEVANCE_INDEX,
    VOCAB_INDEX,
    AtlasData,
    build_ip_index,
    have_faiss,
    recall_at_k,
    write_atlas,
    write_catalog,
)
from index.atlas import read_atlas
from index.gpu import to_cpu
from index.io import read_npz, remove_stray_temps, write_json_atomic
from index.search import write_index
from index.verify import describe_files
from index.work import chunk_path, missing_chunks, read_plan, remove_work, work_dir
from models.errors import AtlasError
from models.stylespace import flat_index, split_layers
from pipeline import jacobian as jacobian_stage
from pipeline import stats as stats_stage
from pipeline import vocabulary as vocab_stage
from pipeline.common import bar
from pipeline.config import IndexConfig, StatsConfig, VocabularyConfig
from pipeline.labels import compute_labels


def require_chunks(out_dir, plan: dict) -> None:
    """AtlasError naming the first stage with missing chunks (e.g. a shard that has not finished)."""
    for stage in ("stats", "relevance", "vocabulary"):
        n = int(plan["chunks"][stage])
        missing = missing_chunks(out_dir, stage, n)
        if missing:
            shown = ", ".join(str(i) for i in missing[:8]) + (" …" if len(missing) > 8 else "")
            raise AtlasError(
                f"the {stage} stage of {out_dir} has {n - len(missing)} of {n} chunks done (missing "
                f"{shown}); finish the build (or the shards owning those chunks) before merging."
            )


def plan_configs(plan: dict) -> tuple[StatsConfig, VocabularyConfig, IndexConfig]:
    c = plan["config"]
    vocab = {k: v for k, v in c["vocabulary"].items() if k != "vocabulary"}
    return StatsConfig(**c["stats"]), VocabularyConfig(**vocab), IndexConfig(**c["index"])


def gather(out_dir, plan: dict) -> AtlasData:
    """The atlas arrays from the work folder (labels included, recall not yet measured)."""
    stats_cfg, vocab_cfg, _ = plan_configs(plan)
    stats = stats_stage.merge(out_dir, stats_cfg)
    layers = plan["layers"]
    layer_mean, layer_std = split_layers(stats["mean"], layers), split_layers(stats["std"], layers)
    parts = [read_npz(chunk_path(out_dir, "relevance", i)) for i in range(int(plan["chunks"]["relevance"]))]
    channels = np.concatenate([p["channels"] for p in parts]).astype(np.int64)  # [C, 2]
    relevance = np.concatenate([p["relevance"] for p in parts]).astype(np.float32)  # [C, D]
    consistency = np.concatenate([p["consistency"] for p in parts]).astype(np.float32)  # [C]
    if len(channels) != plan["num_channels"]:
        raise AtlasError(
            f"the relevance chunks of {out_dir} hold {len(channels)} channels, the plan "
            f"{plan['num_channels']}; delete {work_dir(out_dir)} and build again."
        )
    vocab_emb, neutral_emb = vocab_stage.load(out_dir, len(plan["phrases"]), vocab_cfg)
    labels_index, labels_score = compute_labels(relevance, vocab_emb, neutral_emb, int(plan["config"]["labels"]["k"]))
    flat = flat_index(channels, layers)  # [C]
    return AtlasData(
        path=Path(out_dir),
        channels=channels,
        relevance=relevance,
        consistency=consistency,
        style_mean=stats["mean"][flat],
        style_std=stats["std"][flat],
        layer_mean=layer_mean,
        layer_std=layer_std,
        layers=layers,
        vocab=list(plan["phrases"]),
        vocab_embeddings=vocab_emb,
        templates=list(plan["templates"]),
        neutral=plan["neutral"],
        neutral_embedding=neutral_emb,
        labels_index=labels_index,
        labels_score=labels_score,
        config=plan["config"],
        generator_fingerprint=plan["generator_fingerprint"],
        embedder_fingerprint=plan["embedder_fingerprint"],
        models=dict(plan.get("models") or {}),
        embedder_architecture=str(plan.get("embedder_architecture", "")),
        extra=dict(
            stats_samples=int(stats["count"]),
            num_channels=int(len(channels)),
            dim=int(relevance.shape[1]),
            relevance=jacobian_stage.extra(out_dir, plan),
        ),
    )


def _indexes(data: AtlasData, cfg: IndexConfig, out_dir: Path, device=None) -> dict:
    """Build and write both FAISS indexes; return {name: {type, size, recall_at_10}}."""
    return {
        name: write_ip_index(vectors, cfg, out_dir / file, device)
        for name, vectors, file in (
            ("vocabulary", data.vocab_embeddings, VOCAB_INDEX),
            ("relevance", data.relevance, RELEVANCE_INDEX),
        )
    }


def write_ip_index(vectors: np.ndarray, cfg: IndexConfig, path: Path, device=None) -> dict:
    """One FAISS index over `vectors` (on GPUs for a CUDA device, index/gpu.py), its recall@10 measured, written
    to `path`; returns {type, size, recall_at_10}."""
    index = build_ip_index(
        vectors,
        exact_limit=cfg.exact_limit,
        hnsw_m=cfg.hnsw_m,
        ef_construction=cfg.ef_construction,
        ef_search=cfg.ef_search,
        device=device,
    )
    recall = recall_at_k(index, vectors, k=10, num_queries=cfg.recall_queries)
    index = to_cpu(index)  # what is written (and named in extra) is the CPU index, wherever it was built
    write_index(index, path)
    return dict(type=type(index).__name__, size=int(len(vectors)), recall_at_10=float(recall))


def assemble(out_dir, keep_work: bool = False, show: bool = True, device=None) -> dict:
    """Write the atlas from a complete work folder; return {stage: seconds} of this step."""
    out_dir = Path(out_dir)
    plan = read_plan(out_dir)
    if plan is None:
        raise AtlasError(
            f"{out_dir} has no work/plan.json, so there is nothing to merge; start the build with "
            f"`styleatlas-build --out {out_dir}` (or its --shard jobs) first."
        )
    jacobian_stage.finalize(out_dir, plan)  # jacobian builds: image blocks -> the relevance chunk files
    require_chunks(out_dir, plan)
    _, _, index_cfg = plan_configs(plan)
    times = {}
    with bar(4, "assemble", "step", show) as pbar:
        t0 = time.perf_counter()
        data = _matching_atlas(out_dir, plan)
        resumed = data is not None
        if not resumed:
            data = gather(out_dir, plan)
        times["labels"] = time.perf_counter() - t0
        pbar.update(1)
        t0 = time.perf_counter()
        if have_faiss() and not (resumed and all((out_dir / f).exists() for f in (VOCAB_INDEX, RELEVANCE_INDEX))):
            info = _indexes(data, index_cfg, out_dir, device)
            data.extra.setdefault("indexes", info)
        elif not have_faiss():
            data.extra["indexes"] = "skipped: faiss is not installed (pip install faiss-cpu)"
        times["indexes"] = time.perf_counter() - t0
        pbar.update(1)
        t0 = time.perf_counter()
        if not resumed:
            write_atlas(data)
        times["write"] = time.perf_counter() - t0
        pbar.update(1)
        t0 = time.perf_counter()
        write_catalog(data)
        times["catalog"] = time.perf_counter() - t0
        pbar.update(1)
    write_manifest(out_dir, data)
    finish(out_dir, keep_work)
    return times


OUTPUTS = (ATLAS_FILE, VOCAB_INDEX, RELEVANCE_INDEX, CATALOG)


def write_manifest(out_dir: Path, data: AtlasData) -> None:
    """MANIFEST.json, last: every output's size and sha256 (checked on open) and where the models came from."""
    files, digests = describe_files(out_dir, OUTPUTS)
    stages = dict(
        stats="done",
        relevance="done",
        vocabulary="done",
        labels="done",
        indexes="done" if have_faiss() else "skipped (faiss not installed)",
        catalog="done",
    )
    write_json_atomic(
        out_dir / MANIFEST,
        dict(format_version=1, complete=True, stages=stages, files=files, sha256=digests, models=data.models),
    )


def finish(out_dir: Path, keep_work: bool) -> list[Path]:
    """After MANIFEST.json: delete what the build wrote in work/ (unless kept) and its own stray temp files.

    Returns what was left in work/ because the build did not write it (never deleted).
    """
    left = [] if keep_work else remove_work(out_dir)
    remove_stray_temps(out_dir, names=OUTPUTS + (MANIFEST,))
    return left


def repair(out_dir: Path, data: AtlasData, index_cfg: IndexConfig) -> None:
    """Rewrite the outputs that derive from a sound atlas.h5 (FAISS indexes, catalog, manifest)."""
    if have_faiss():
        data.extra.setdefault("indexes", _indexes(data, index_cfg, out_dir))
    write_catalog(data)
    write_manifest(out_dir, data)


def _matching_atlas(out_dir: Path, plan: dict) -> AtlasData | None:
    """An atlas.h5 already written from this plan (a resumed assembly), else None."""
    if not (out_dir / ATLAS_FILE).exists():
        return None
    try:
        data = read_atlas(out_dir, require_complete=False)
    except AtlasError:
        return None
    same = (
        json.dumps(data.config, sort_keys=True) == json.dumps(plan["config"], sort_keys=True)
        and data.generator_fingerprint == plan["generator_fingerprint"]
        and data.embedder_fingerprint == plan["embedder_fingerprint"]
    )
    return data if same else None
