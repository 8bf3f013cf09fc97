"""Integrity of an atlas on open: file sizes and sha256 against the manifest, declared dataset sizes against
the file, and the arrays against each other (shapes, dtypes, ranges, finite values, unit rows, FAISS counts).

An atlas is data someone may hand over; a flipped byte, a swapped index or a forged header must be a one-line
AtlasFormatError that names the file and what to do, never a traceback, a 24 GiB allocation or a wrong answer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from models.errors import AtlasFormatError

UNIT_TOLERANCE = 1e-3  # |norm - 1| allowed for rows stored as unit vectors (float32 round-off is ~1e-7)


def sha256_file(path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def describe_files(out_dir, names) -> tuple[dict, dict]:
    """({name: bytes}, {name: sha256}) of the atlas files that exist (what MANIFEST.json records)."""
    out_dir = Path(out_dir)
    present = [n for n in names if (out_dir / n).is_file()]
    return ({n: (out_dir / n).stat().st_size for n in present}, {n: sha256_file(out_dir / n) for n in present})


def verify_files(out_dir, manifest: dict, hashes: bool = True) -> None:
    """Every file the manifest lists exists with its recorded size (and sha256 when `hashes` and recorded)."""
    out_dir = Path(out_dir)
    sizes, digests = manifest.get("files") or {}, manifest.get("sha256") or {}
    if not isinstance(sizes, dict) or not isinstance(digests, dict):
        raise AtlasFormatError(
            f"{out_dir / 'MANIFEST.json'} is malformed (files/sha256 are not objects); delete it "
            "and run the build command again."
        )
    for name, size in sizes.items():
        path = out_dir / name
        if not path.is_file():
            raise AtlasFormatError(f"{path} is missing; run the build command again to rewrite it.")
        if path.stat().st_size != size:
            raise AtlasFormatError(
                f"{path} is {path.stat().st_size:,} bytes but the build wrote {size:,}; it was "
                "changed or damaged: run the build command again to rewrite it."
            )
        if hashes and name in digests and sha256_file(path) != digests[name]:
            raise AtlasFormatError(
                f"{path} differs from the file the build wrote (sha256 mismatch); it was changed "
                "or damaged: run the build command again to rewrite it."
            )


def check_declared_sizes(h5, path: Path) -> None:
    """Refuse datasets that declare more bytes than the file holds (a forged header asking for 24 GiB)."""
    import h5py

    file_bytes = path.stat().st_size
    total = 0

    def visit(name, obj):
        nonlocal total
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind != "O":
            n = int(np.prod(obj.shape, dtype=np.float64) * obj.dtype.itemsize)
            total += n
            if n > file_bytes:
                raise AtlasFormatError(
                    f"{path} declares dataset {name} of shape {obj.shape} ({n:,} bytes) in a file "
                    f"of {file_bytes:,} bytes; it is damaged or forged: rebuild the atlas."
                )

    h5.visititems(visit)
    if total > file_bytes:
        raise AtlasFormatError(
            f"{path} declares {total:,} bytes of arrays in a file of {file_bytes:,} bytes; it is "
            "damaged or forged: rebuild the atlas."
        )


def _bad(path, what: str) -> AtlasFormatError:
    return AtlasFormatError(
        f"{path} is inconsistent: {what}; it is damaged or was written by something else, rebuild the atlas."
    )


def _finite(path, name: str, a: np.ndarray) -> None:
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise AtlasFormatError(
            f"{path} holds {bad:,} NaN or infinite values in {name} (a model that overflowed, e.g. "
            "in fp16, or a damaged file); rebuild the atlas (in fp32)."
        )


def _unit_rows(path, name: str, a: np.ndarray, allow_zero: bool) -> None:
    norm = np.linalg.norm(a.astype(np.float64), axis=-1)
    ok = np.abs(norm - 1) <= UNIT_TOLERANCE
    if allow_zero:
        ok |= norm <= UNIT_TOLERANCE
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise _bad(path, f"{name} row {i} has norm {norm.flat[i]:.4g}, not 1")


def check_channels(channels: np.ndarray, widths: list, path) -> None:
    """channels [C, 2] name existing (layer, channel) pairs, each once."""
    if channels.ndim != 2 or channels.shape[1] != 2:
        raise _bad(path, f"channels has shape {channels.shape}, not [C, 2]")
    if not len(channels):
        return
    layer, channel = channels[:, 0], channels[:, 1]
    if layer.min() < 0 or layer.max() >= len(widths):
        raise _bad(path, f"channels name layers outside 0..{len(widths) - 1}")
    if (channel < 0).any() or (channel >= np.asarray(widths)[layer]).any():
        raise _bad(path, "channels name channels outside their layer's width")
    if len(np.unique(channels, axis=0)) != len(channels):
        raise _bad(path, "channels lists a (layer, channel) twice")


def check_arrays(data, path) -> None:
    """Cross-check an AtlasData read from `path` (FORMAT.md): shapes, dtypes, ranges, finite, unit rows."""
    C = len(data.channels)
    if data.channels.ndim != 2 or data.channels.shape[1] != 2:
        raise _bad(path, f"channels has shape {data.channels.shape}, not [C, 2]")
    if data.relevance.ndim != 2 or len(data.relevance) != C:
        raise _bad(path, f"relevance has shape {data.relevance.shape}, channels {C} rows")
    D = data.relevance.shape[1]
    if D < 1:
        raise _bad(path, "the embedding width D is 0")
    V = len(data.vocab)
    shapes = dict(
        consistency=(data.consistency.shape, (C,)),
        vocab_embeddings=(data.vocab_embeddings.shape, (V, D)),
        neutral_embedding=(data.neutral_embedding.shape, (D,)),
    )
    for name, (got, want) in shapes.items():
        if tuple(got) != want:
            raise _bad(path, f"{name} has shape {tuple(got)}, expected {want}")
    li, ls = data.labels_index, data.labels_score
    if li.shape != ls.shape or (C and (li.ndim != 2 or len(li) != C)):
        raise _bad(path, f"labels/index {li.shape} and labels/score {ls.shape} are not both [C={C}, k]")
    if li.size and (li.min() < -1 or li.max() >= V):
        raise _bad(path, f"labels/index holds vocabulary rows outside [-1, {V})")
    widths = [int(l["width"]) for l in data.layers]
    if (
        any(w < 0 for w in widths)
        or sum(len(m) for m in data.layer_mean) != sum(widths)
        or any(len(m) != w or len(s) != w for m, s, w in zip(data.layer_mean, data.layer_std, widths))
    ):
        raise _bad(path, "style/mean and style/std do not match the layer widths")
    check_channels(data.channels, widths, path)
    for name, a in (
        ("relevance", data.relevance),
        ("consistency", data.consistency),
        ("style/mean", np.concatenate(data.layer_mean) if data.layer_mean else np.zeros(0)),
        ("style/std", np.concatenate(data.layer_std) if data.layer_std else np.zeros(0)),
        ("vocabulary/embeddings", data.vocab_embeddings),
        ("neutral_embedding", data.neutral_embedding),
    ):
        _finite(path, name, np.asarray(a))
    if any((np.asarray(s) < 0).any() for s in data.layer_std):
        raise _bad(path, "style/std holds negative values")
    _unit_rows(path, "relevance", data.relevance, allow_zero=True)
    _unit_rows(path, "vocabulary/embeddings", data.vocab_embeddings, allow_zero=False)
    _unit_rows(path, "neutral_embedding", data.neutral_embedding[None], allow_zero=False)


def check_index(index, vectors: np.ndarray, path) -> None:
    """A FAISS index holds exactly `vectors` (count, width, and a few stored rows compared)."""
    n, d = vectors.shape
    if int(index.ntotal) != n or int(index.d) != d:
        raise AtlasFormatError(
            f"{path} holds {index.ntotal:,} vectors of width {index.d} but the atlas has {n:,} of "
            f"width {d}; it belongs to another atlas: delete it and run the build command again."
        )
    if n == 0:
        return
    rows = sorted({0, n // 2, n - 1})
    try:
        stored = np.stack([index.reconstruct(int(i)) for i in rows])  # [3, D]
    except RuntimeError:  # an index type that cannot reconstruct: the counts are all we can check
        return
    if not np.allclose(stored, vectors[rows], atol=1e-5):
        raise AtlasFormatError(
            f"{path} holds other vectors than the atlas (row {rows[0]} differs); it belongs to "
            "another atlas or is damaged: delete it and run the build command again."
        )
