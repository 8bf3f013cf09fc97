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

import contextlib
import json
import os
import re
import socket
import time
from pathlib import Path

from models.errors import AtlasError

WORK = "work"
PLAN = "plan.json"
LOCK = ".lock"
STAGES = ("stats", "relevance", "vocabulary")
JACOBIAN = "relevance_jacobian"  # jacobian builds: image-block chunks, summed into relevance/ at assembly
CHECK = "relevance_check.json"  # jacobian builds: the exact check figures (atlas extra.relevance)
_CHUNK = re.compile(r"^chunk_\d{5}\.npz$")


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
    """work/plan.json, None when absent; AtlasError naming the file when it cannot be read."""
    path = plan_path(out_dir)
    if not path.exists():
        return None
    try:
        plan = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AtlasError(
            f"{path} is not readable JSON ({str(exc)[:80]}); delete it (or the whole {work_dir(out_dir)} "
            "folder) and run the build command again."
        ) from None
    if not isinstance(plan, dict) or not isinstance(plan.get("chunks"), dict):
        raise AtlasError(
            f"{path} is not a build plan; delete it (or the whole {work_dir(out_dir)} folder) and run "
            "the build command again."
        )
    return plan


def drop_damaged_chunks(out_dir, plan: dict) -> list[Path]:
    """Delete chunk files that cannot be read (truncated or overwritten) so the stage computes them again."""
    import numpy as np

    paths = [
        chunk_path(out_dir, stage, i)
        for stage in STAGES + (JACOBIAN,)
        for i in range(int(plan["chunks"].get(stage, 0)))
    ]
    paths += [stats_path(out_dir), neutral_path(out_dir)]
    dropped = []
    for path in paths:
        if not path.exists():
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                for key in z.files:
                    z[key]
        except Exception:  # zipfile, numpy and OS errors of many kinds: the file is not what we wrote
            path.unlink()
            dropped.append(path)
    if dropped and stats_path(out_dir).exists() and any(p.parent.name == "stats" for p in dropped):
        stats_path(out_dir).unlink()  # merged from a chunk that is gone
    return dropped


def is_ours(name: str, stage: str | None = None) -> bool:
    """Whether a file name inside work/ (or work/<stage>/) is one a build writes (index/work.py layout)."""
    if name.startswith(".tmp-"):
        return True
    if stage is None:
        return name in (PLAN, "stats.npz", LOCK, CHECK)
    return bool(_CHUNK.match(name)) or (stage == "vocabulary" and name == "neutral.npz")


def remove_work(out_dir) -> list[Path]:
    """Delete the files a build wrote under work/ (and the folders, once empty); return what was left there.

    Anything else (a file someone put there) is kept, and so is the folder that holds it.
    """
    root = work_dir(out_dir)
    if not root.is_dir():
        return []
    left = []
    for stage in STAGES + (JACOBIAN,):
        folder = root / stage
        if folder.is_dir():
            for p in folder.iterdir():
                if p.is_file() and is_ours(p.name, stage):
                    with contextlib.suppress(OSError):
                        p.unlink()
                else:
                    left.append(p)
            with contextlib.suppress(OSError):
                folder.rmdir()
    for p in root.iterdir():
        if p.name == LOCK or p in left or (p.is_dir() and any(q.parent == p for q in left)):
            continue
        if p.is_file() and is_ours(p.name):
            with contextlib.suppress(OSError):
                p.unlink()
        else:
            left.append(p)
    left = [p for p in left if p.exists()]
    if not left:
        with contextlib.suppress(OSError):
            (root / LOCK).unlink()
        with contextlib.suppress(OSError):
            root.rmdir()
    return left


class BuildLock:
    """An advisory lock on work/.lock (fcntl.flock): one build (or merge) per atlas folder at a time.

    Released when the process ends, however it ends. The file says who holds it (pid, host, start time).
    """

    def __init__(self, out_dir):
        self.path = work_dir(out_dir) / LOCK
        self._fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; builds are still crash-safe, only not exclusive
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise AtlasError(
                f"another build is running in {self.path.parent.parent} ({holder}); wait for it to "
                f"finish, or stop it (if that process is gone, delete {self.path})."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}".encode(),
            0,
        )
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            import fcntl

            folder = self.path.parent
            with contextlib.suppress(OSError):
                self.path.unlink()  # the build is over: leave no lock file (and no work/ if nothing else is there)
                if not any(folder.iterdir()):
                    folder.rmdir()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        return False


def missing_chunks(out_dir, stage: str, num_chunks: int, among=None) -> list[int]:
    """Chunk indices of `stage` without a file, in order; `among`: only these (a worker's share)."""
    wanted = range(num_chunks) if among is None else sorted(set(among) & set(range(num_chunks)))
    return [i for i in wanted if not chunk_path(out_dir, stage, i).exists()]


def progress(out_dir) -> dict[str, tuple[int, int]]:
    """{stage: (chunks done, chunks planned)} from the work folder; empty when no build was started."""
    plan = read_plan(out_dir)
    if plan is None:
        return {}
    out = {}
    for stage in STAGES:
        if stage == "relevance" and JACOBIAN in plan["chunks"]:
            stage = JACOBIAN  # a jacobian build: image blocks, summed into relevance at assembly
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
