"""atlas.h5: the arrays of an atlas (SPEC §2-§4 results), written once, atomically; read into AtlasData."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from index.layout import ATLAS_FILE, CATALOG, MANIFEST, RELEVANCE_INDEX, VOCAB_INDEX
from index.work import describe_unfinished
from models.errors import AtlasFormatError
from models.files import atomic_path
from models.stylespace import layer_offsets

FORMAT_VERSION = 1
LAYER_FIELDS = ("index", "kind", "resolution", "width", "w_index", "in_atlas")


@dataclass
class AtlasData:
    """Everything an atlas holds (index/FORMAT.md). Row r of every [C, ...] array is channel channels[r]."""

    path: Path
    channels: np.ndarray  # [C, 2] int64 (layer, channel)
    relevance: np.ndarray  # [C, D] float32, unit rows (zero for a channel that changes nothing)
    consistency: np.ndarray  # [C] float32, mean pairwise cosine of the M per-image directions
    style_mean: np.ndarray  # [C] float64
    style_std: np.ndarray  # [C] float64
    layer_mean: list  # per style layer (all, toRGB too): [width] float64
    layer_std: list
    layers: list  # per style layer: index, kind, resolution, width, w_index, in_atlas
    vocab: list  # [V] phrases
    vocab_embeddings: np.ndarray  # [V, D] float32, template-averaged unit t(p)
    templates: list
    neutral: str
    neutral_embedding: np.ndarray  # [D] float32, t(neutral)
    labels_index: np.ndarray  # [C, k] int64 rows of vocab (-1: no label)
    labels_score: np.ndarray  # [C, k] float32 relevance @ Δt(phrase, neutral)
    config: dict
    generator_fingerprint: str
    embedder_fingerprint: str
    extra: dict = field(default_factory=dict)  # recall@10, timings, stage notes
    models: dict = field(default_factory=dict)  # where the models came from: {generator, clip, pretrained}
    embedder_architecture: str = ""  # CLIP model config + module classes hash ("" in atlases made before it)

    @property
    def dim(self) -> int:
        return int(self.relevance.shape[1])


def _str_dataset(h5, name, values):
    import h5py

    h5.create_dataset(name, data=np.array(list(values), dtype=object), dtype=h5py.string_dtype("utf-8"))


def write_atlas(data: AtlasData) -> Path:
    """Write `data.path/atlas.h5` atomically (temp file + rename); return its path."""
    import h5py

    path = Path(data.path) / ATLAS_FILE
    layer_offset = layer_offsets(data.layers)[:-1]  # [L] int64, where each layer starts in style/mean
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format_version"] = FORMAT_VERSION
            h5.attrs["config"] = json.dumps(data.config, sort_keys=True)
            h5.attrs["generator_fingerprint"] = data.generator_fingerprint
            h5.attrs["embedder_fingerprint"] = data.embedder_fingerprint
            h5.attrs["neutral"] = data.neutral
            h5.attrs["extra"] = json.dumps(data.extra, sort_keys=True)
            h5.attrs["models"] = json.dumps(data.models, sort_keys=True)
            h5.attrs["embedder_architecture"] = data.embedder_architecture
            h5.create_dataset("channels", data=np.asarray(data.channels, np.int64))
            h5.create_dataset("relevance", data=np.asarray(data.relevance, np.float32))
            h5.create_dataset("consistency", data=np.asarray(data.consistency, np.float32))
            g = h5.create_group("style")
            g.create_dataset("mean", data=np.concatenate([np.asarray(m, np.float64) for m in data.layer_mean]))
            g.create_dataset("std", data=np.concatenate([np.asarray(s, np.float64) for s in data.layer_std]))
            g = h5.create_group("layers")
            for key in LAYER_FIELDS:
                if key == "kind":
                    _str_dataset(g, key, [l[key] for l in data.layers])
                else:
                    g.create_dataset(key, data=np.array([int(l[key]) for l in data.layers], np.int64))
            g.create_dataset("offset", data=layer_offset.astype(np.int64))
            g = h5.create_group("vocabulary")
            _str_dataset(g, "phrases", data.vocab)
            g.create_dataset(
                "embeddings", data=np.asarray(data.vocab_embeddings, np.float32).reshape(len(data.vocab), -1)
            )
            _str_dataset(h5, "templates", data.templates)
            h5.create_dataset("neutral_embedding", data=np.asarray(data.neutral_embedding, np.float32))
            g = h5.create_group("labels")
            g.create_dataset("index", data=np.asarray(data.labels_index, np.int64))
            g.create_dataset("score", data=np.asarray(data.labels_score, np.float32))
    return path


def read_manifest(out_dir) -> dict | None:
    """MANIFEST.json as a dict, None when absent; AtlasFormatError when it is not a readable JSON object."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AtlasFormatError(
            f"{path} is not readable JSON ({str(exc)[:80]}); run the build command again to rewrite it."
        ) from None
    if not isinstance(manifest, dict):
        raise AtlasFormatError(
            f"{path} holds a {type(manifest).__name__}, not an object; run the build command again to rewrite it."
        )
    return manifest


def read_atlas(
    out_dir,
    *,
    require_complete: bool = True,
    generator=None,
    embedder=None,
    check_fingerprints: bool = True,
    verify: bool = True,
) -> AtlasData:
    """Open an atlas folder. AtlasFormatError says which stage is missing when it is incomplete.

    require_complete=False also opens an atlas.h5 whose FAISS indexes or catalog were not written yet.
    With `generator` / `embedder`, their fingerprints must match the atlas (unless check_fingerprints=False).
    verify: check every file against the manifest's sizes and sha256, and the arrays and FAISS indexes against
    each other (index/verify.py); verify=False skips the hashes and the FAISS check (sizes and arrays stay).
    """
    import h5py

    from index import verify as integrity

    out_dir = Path(out_dir)
    if not out_dir.exists():
        raise AtlasFormatError(
            f"atlas folder {out_dir} does not exist; build one with `styleatlas-build --out {out_dir}`."
        )
    if not out_dir.is_dir():
        raise AtlasFormatError(f"{out_dir} is a file, not an atlas folder; pass the folder that holds atlas.h5.")
    path = out_dir / ATLAS_FILE
    if not path.exists():
        raise AtlasFormatError(
            f"atlas {out_dir} is incomplete: {describe_unfinished(out_dir)}; run the same "
            "build command again to finish it."
        )
    manifest = read_manifest(out_dir) if require_complete else None
    if require_complete:
        if manifest is None or not manifest.get("complete"):
            stage = _unfinished_output_stage(out_dir)
            raise AtlasFormatError(
                f"atlas {out_dir} is incomplete: the {stage} stage did not finish; run the same "
                "build command again to finish it (or open with require_complete=False)."
            )
    if manifest is not None:
        integrity.verify_files(out_dir, manifest, hashes=verify)
    try:
        with h5py.File(path, "r") as h5:
            version = int(h5.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise AtlasFormatError(
                    f"{path} has format version {version}, this StyleAtlas reads version "
                    f"{FORMAT_VERSION}; rebuild the atlas with this version."
                )
            integrity.check_declared_sizes(h5, path)
            data = _read_h5(h5, out_dir)
    except AtlasFormatError:
        raise
    except OSError as exc:
        raise AtlasFormatError(
            f"{path} is not a readable HDF5 file ({str(exc)[:120]}); delete it and run the build command again."
        ) from None
    except KeyError as exc:
        raise AtlasFormatError(f"{path} lacks {exc}; it was written by something else, rebuild the atlas.") from None
    except (ValueError, TypeError, IndexError, MemoryError) as exc:  # garbled attrs, shapes, offsets
        raise AtlasFormatError(
            f"{path} is damaged ({type(exc).__name__}: {str(exc)[:100]}); rebuild the atlas."
        ) from None
    integrity.check_arrays(data, path)
    if verify and require_complete:
        _check_indexes(data)
    if check_fingerprints and (generator is not None or embedder is not None):
        from index import fingerprint  # torch: only when models are given (reading an atlas does not need it)

        fingerprint.check_fingerprints(data, generator, embedder)
    return data


def _read_h5(h5, out_dir: Path) -> AtlasData:
    g = h5["layers"]
    kinds = list(g["kind"].asstr()[()])
    layers = [
        dict(index=int(i), kind=str(k), resolution=int(r), width=int(w), w_index=int(wi), in_atlas=bool(a))
        for i, k, r, w, wi, a in zip(
            g["index"][()], kinds, g["resolution"][()], g["width"][()], g["w_index"][()], g["in_atlas"][()]
        )
    ]
    offset = g["offset"][()]
    mean, std = h5["style/mean"][()], h5["style/std"][()]
    layer_mean = [mean[o : o + l["width"]] for o, l in zip(offset, layers)]
    layer_std = [std[o : o + l["width"]] for o, l in zip(offset, layers)]
    channels = h5["channels"][()].astype(np.int64)
    from index.verify import check_channels

    check_channels(channels, [l["width"] for l in layers], h5.filename)
    flat = offset[channels[:, 0]] + channels[:, 1] if len(channels) else np.zeros(0, np.int64)
    return AtlasData(
        path=out_dir,
        channels=channels,
        relevance=h5["relevance"][()].astype(np.float32),
        consistency=h5["consistency"][()].astype(np.float32),
        style_mean=mean[flat],
        style_std=std[flat],
        layer_mean=layer_mean,
        layer_std=layer_std,
        layers=layers,
        vocab=[str(p) for p in h5["vocabulary/phrases"].asstr()[()]],
        vocab_embeddings=h5["vocabulary/embeddings"][()].astype(np.float32),
        templates=[str(t) for t in h5["templates"].asstr()[()]],
        neutral=str(h5.attrs["neutral"]),
        neutral_embedding=h5["neutral_embedding"][()].astype(np.float32),
        labels_index=h5["labels/index"][()].astype(np.int64),
        labels_score=h5["labels/score"][()].astype(np.float32),
        config=json.loads(h5.attrs["config"]),
        generator_fingerprint=str(h5.attrs["generator_fingerprint"]),
        embedder_fingerprint=str(h5.attrs["embedder_fingerprint"]),
        extra=json.loads(h5.attrs.get("extra", "{}")),
        models=json.loads(h5.attrs.get("models", "{}")),
        embedder_architecture=str(h5.attrs.get("embedder_architecture", "")),
    )


def _check_indexes(data: AtlasData) -> None:
    """The FAISS files hold this atlas's vectors (a swapped vocab.faiss answers with another vocabulary)."""
    from index.search import have_faiss
    from index.verify import check_index

    if not have_faiss():
        return
    import faiss

    for file, vectors in ((VOCAB_INDEX, data.vocab_embeddings), (RELEVANCE_INDEX, data.relevance)):
        path = data.path / file
        if path.exists():
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:
                raise AtlasFormatError(
                    f"{path} is not a readable FAISS index ({str(exc).strip().splitlines()[0][:80]}"
                    "); delete it and run the build command again."
                ) from None
            check_index(index, np.ascontiguousarray(vectors, np.float32), path)


def _unfinished_output_stage(out_dir: Path) -> str:
    """The first output written after atlas.h5 that is missing (assembly order: indexes, catalog, manifest)."""
    from index.search import have_faiss

    if have_faiss() and not all((out_dir / f).exists() for f in (VOCAB_INDEX, RELEVANCE_INDEX)):
        return "indexes"
    if not (out_dir / CATALOG).exists():
        return "catalog"
    return "manifest"
