"""The `work/` folder of an atlas being built: per-chunk results, each file written atomically.

A chunk file exists only when its chunk is complete, so the folder is its own done-mask: a killed build
resumes by computing the chunks whose files are missing, and reading a half-built atlas can say exactly
which stage is unfinished. Layout (all under `<atlas>/work/`):

    plan.json                   the frozen build config, fingerprints, chunk counts (written first)
    stats/chunk_00000.npz       count, mean, m2 over every style channel for one block of samples
    stats.npz                   the merged mean / std (float64) over all samples
    relevance/chunk_00000.npz   relevance [cc, D] float32, consistency [cc] float32 for one block of channels
    relevance_jacobian/chunk_00000.npz  jacobian builds: sum d_k [C, D], sum |d_k|^2 [C] for one block of images
                                (the last chunk: the exact check rows); summed into relevance/ at assembly
    vocabulary/chunk_00000.npz  embeddings [n, D] float32 for one block of phrases
    vocabulary/neutral.npz      t(neutral) [D]
"""
from __future__ import annotations

import json
from pathlib import Path

WORK = "work"
PLAN = "plan.json"
STAGES = ("stats", "relevance", "vocabulary")


def work_dir(out_dir) -> Path:
    return Path(out_dir) / WORK


def plan_path(out_dir) -> Path:
    return work_dir(out_dir) / PLAN


def chunk_path(out_dir, stage: str, i: int) -> Path:
    return work_dir(out_dir) / stage / f"chunk_{i:05d}.npz"


def stats_path(out_dir) -> Path:
    return work_dir(out_dir) / "stats.npz"


def neutral_path(out_dir) -> Path:
    return work_dir(out_dir) / "vocabulary" / "neutral.npz"


def read_plan(out_dir) -> dict | None:
    path = plan_path(out_dir)
    if not path.exists():
        return None
    return json.loads(path.read_text("utf-8"))


def missing_chunks(out_dir, stage: str, num_chunks: int) -> list[int]:
    return [i for i in range(num_chunks) if not chunk_path(out_dir, stage, i).exists()]


def progress(out_dir) -> dict[str, tuple[int, int]]:
    """{stage: (chunks done, chunks planned)} from the work folder; empty when no build was started."""
    plan = read_plan(out_dir)
    if plan is None:
        return {}
    out = {}
    for stage in STAGES:
        if stage == "relevance" and "relevance_jacobian" in plan["chunks"]:
            stage = "relevance_jacobian"  # a jacobian build: image blocks, summed into relevance at assembly
        n = int(plan["chunks"][stage])
        out[stage] = (n - len(missing_chunks(out_dir, stage, n)), n)
    return out


def describe_unfinished(out_dir) -> str:
    """One clause naming the first unfinished stage of a build, e.g. 'the relevance stage has 3 of 10 chunks'."""
    prog = progress(out_dir)
    if not prog:
        return "no build was started there (no atlas.h5 and no work/plan.json)"
    for stage in prog:
        done, total = prog[stage]
        if done < total:
            return f"the {stage} stage has {done} of {total} chunks done"
    if not stats_path(out_dir).exists():
        return "the stats stage is computed but not merged"
    return "every chunk is computed but the atlas (atlas.h5) was not assembled"
