"""Bulk export: directions for thousands of prompts from one product relevance @ ΔT, to .h5 / .npz / .pt.

The library holds Δs [N, C] row-aligned with the atlas's channels, plus num_c and the beta of every prompt.
With the StyleCLIP layout it also holds one array per style layer ([N, width_l], toRGB zero), so
`[layer[n] for layer in arrays]` is the per-layer list StyleCLIP's manipulation code adds to its codes.
A JSON manifest beside the file says how it was made. Every file is written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index.io import refuse_inside, write_json_atomic
from models.directions import delta_t_rows
from models.errors import AtlasError, NoDirectionError, PromptError
from models.files import atomic_path
from models.prompts import validate_prompt
from models.stylespace import to_layers
from query.direction import DEFAULT_BETA, check_beta, floor_beta, global_directions
from query.prompts import is_composition, lookup_key, parse_composition

FORMATS = (".h5", ".npz", ".pt")


@dataclass
class Library:
    """Directions for many prompts (row n of every array is prompts[n])."""

    prompts: list
    neutral: str
    delta_s: np.ndarray  # [N, C] float32
    delta_t: np.ndarray  # [N, D] float32 (zero rows where undefined)
    num_c: np.ndarray  # [N] int64, 0 where no channel passed beta
    beta: np.ndarray  # [N] float64, the threshold used per prompt
    max_score: np.ndarray  # [N] max |r| per prompt (the largest beta that would keep a channel)
    source: list  # [N] "vocabulary" | "neutral" | "embedded"
    problems: list = field(default_factory=list)  # [{prompt, reason}] for rows left empty

    def __len__(self) -> int:
        return len(self.prompts)


def compute_library(atlas, prompts, neutral: str = "", beta=DEFAULT_BETA, top_k: int | None = None) -> Library:
    """SPEC §5 for every prompt at once: vocabulary embeddings looked up, the rest embedded in one batch."""
    check_beta(beta)
    prompts = [validate_prompt(p) for p in prompts]
    if not prompts:
        raise AtlasError("no prompts to export; give at least one.")
    neutral_name, t_neutral = atlas.neutral_embedding(neutral)
    neutral_key = lookup_key(atlas.neutral)
    rows, source = np.full(len(prompts), -1, np.int64), []
    composed = {}  # row -> the composition's Direction (or its error), computed like `direction` does
    for n, p in enumerate(prompts):
        i = -2 if lookup_key(p) == neutral_key else atlas.vocab_index(p)
        if i is None and is_composition(p):
            parse_composition(p)  # a malformed weight (red:nan) is the user's error, not a phrase to embed
            try:
                composed[n] = atlas.direction(p, neutral, beta, top_k=top_k)
            except NoDirectionError as exc:  # a term that is the neutral: a row without a direction, as below
                composed[n] = exc
            except PromptError:
                raise
            except AtlasError as exc:
                composed[n] = exc
            i = -2  # its row of the batch below stays empty; filled from composed[n]
        rows[n] = -1 if i is None else i
        source.append(
            "composition" if n in composed else "neutral" if i == -2 else "embedded" if i is None else "vocabulary"
        )
    T = np.empty((len(prompts), atlas.data.dim), np.float32)  # [N, D] t(p)
    known = rows >= 0
    T[known] = atlas.data.vocab_embeddings[rows[known]]
    T[rows == -2] = atlas.data.neutral_embedding
    new = [p for p, r in zip(prompts, rows) if r == -1]
    if new:
        T[rows == -1] = atlas.embed(new)
    delta_t, defined = delta_t_rows(T, t_neutral)  # [N, D], [N]
    _, delta_s, num_c, betas, max_abs = global_directions(
        atlas.data.relevance, atlas.data.style_std, delta_t, beta, top_k, keep_scores=False
    )
    for n, d in composed.items():
        if not isinstance(d, AtlasError):
            delta_s[n], num_c[n] = d.delta_s, d.num_c
            betas[n] = d.beta if d.beta is not None else np.nan
            max_abs[n] = float(np.abs(d.scores).max())
    problems = []
    for n, d in composed.items():
        if isinstance(d, AtlasError):
            problems.append(dict(prompt=prompts[n], reason=str(d).rstrip(".")))
    for n in np.flatnonzero(num_c == 0):
        if n in composed:
            continue
        reason = (
            "its embedding equals the neutral's"
            if not defined[n]
            else f"no channel passes beta {betas[n]:g}; use beta <= {floor_beta(float(max_abs[n])):g}"
        )
        problems.append(dict(prompt=prompts[n], reason=reason))
    return Library(
        prompts=prompts,
        neutral=neutral_name,
        delta_s=delta_s,
        delta_t=delta_t,
        num_c=num_c,
        beta=betas,
        max_score=max_abs,
        source=source,
        problems=problems,
    )


def styleclip_arrays(atlas, delta_s: np.ndarray) -> list[np.ndarray]:
    """One [N, width_l] float32 array per style layer (every layer; toRGB and unmeasured layers zero)."""
    return to_layers(delta_s, atlas.data.channels, atlas.layer_widths, atlas.rows_by_layer())


def manifest_path(path) -> Path:
    """The manifest beside a library, named after the whole file name (lib.h5 -> lib.h5.manifest.json), so the
    .h5, .npz and .pt of one stem each keep their own."""
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def export_library(
    atlas, prompts, path, neutral: str = "", beta=DEFAULT_BETA, top_k: int | None = None, styleclip_layout: bool = False
) -> dict:
    """Compute and write a library to `path` (.h5, .npz or .pt) plus its manifest; return the manifest."""
    path = refuse_inside(atlas.data.path, path, "export")
    refuse_inside(atlas.data.path, manifest_path(path), "export manifest")
    if path.suffix not in FORMATS:
        raise AtlasError(f"export writes {', '.join(FORMATS)} files; {path.name} has none of these suffixes.")
    t0 = time.perf_counter()
    lib = compute_library(atlas, prompts, neutral, beta, top_k)
    seconds = time.perf_counter() - t0
    layers = styleclip_arrays(atlas, lib.delta_s) if styleclip_layout else None
    meta = dict(
        atlas=str(atlas.data.path),
        generator_fingerprint=atlas.data.generator_fingerprint,
        embedder_fingerprint=atlas.data.embedder_fingerprint,
        neutral=lib.neutral,
        beta_option=beta if isinstance(beta, str) else float(beta),
        top_k=top_k,
    )
    arrays = dict(
        delta_s=lib.delta_s,
        delta_t=lib.delta_t,
        num_c=lib.num_c,
        beta=lib.beta,
        max_score=lib.max_score,
        channels=np.asarray(atlas.data.channels, np.int64),
        style_std=np.asarray(atlas.data.style_std, np.float64),
    )
    writer = {".h5": _write_h5, ".npz": _write_npz, ".pt": _write_pt}[path.suffix]
    writer(path, lib, arrays, layers, meta)
    manifest = dict(
        file=path.name,
        format=path.suffix[1:],
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        num_prompts=len(lib),
        num_channels=int(lib.delta_s.shape[1]),
        dim=int(lib.delta_t.shape[1]),
        styleclip_layout=bool(styleclip_layout),
        layer_widths=atlas.layer_widths if styleclip_layout else None,
        seconds=round(seconds, 4),
        directions_per_second=round(len(lib) / max(seconds, 1e-9), 1),
        arrays={k: list(v.shape) for k, v in arrays.items()},
        problems=lib.problems,
        **meta,
        prompts=[
            dict(prompt=p, num_c=int(c), beta=float(b), source=s)
            for p, c, b, s in zip(lib.prompts, lib.num_c, lib.beta, lib.source)
        ],
    )
    write_json_atomic(manifest_path(path), manifest)
    return manifest


def _write_h5(path, lib, arrays, layers, meta) -> None:
    import h5py

    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as h5:
            for key, value in meta.items():
                h5.attrs[key] = json.dumps(value)
            h5.create_dataset("prompts", data=np.array(lib.prompts, dtype=object), dtype=h5py.string_dtype("utf-8"))
            for key, value in arrays.items():
                h5.create_dataset(key, data=value)
            if layers is not None:
                g = h5.create_group("styleclip")
                for i, a in enumerate(layers):
                    g.create_dataset(f"layer_{i:02d}", data=a)


def _write_npz(path, lib, arrays, layers, meta) -> None:
    extra = {f"styleclip_layer_{i:02d}": a for i, a in enumerate(layers or [])}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, prompts=np.array(lib.prompts, dtype=str), meta=np.array(json.dumps(meta)), **arrays, **extra)


def _write_pt(path, lib, arrays, layers, meta) -> None:
    import torch  # only here: a .h5 / .npz export needs no torch (index/FORMAT.md: queries stay light)

    obj = dict(
        prompts=list(lib.prompts),
        meta=meta,
        **{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
    )
    if layers is not None:
        obj["styleclip"] = [torch.from_numpy(a) for a in layers]
    with atomic_path(path, suffix=".pt") as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
