"""One frozen config per stage (defaults from SPEC.md), and the flat keyword form build_atlas accepts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models.errors import AtlasError
from models.seeds import DEFAULT_PSI

SEED = 5  # SPEC §2: the reference's seed of the sampled latents (statistics and relevance images)


@dataclass(frozen=True)
class StatsConfig:
    """SPEC §2: per-channel mean and std of every style layer over num_samples psi-truncated samples."""

    num_samples: int = 100_000
    psi: float = DEFAULT_PSI
    seed: int = SEED
    batch_size: int = 1000  # samples per mapping call
    chunk_size: int = 10_000  # samples per work file (the resume and sharding unit)


@dataclass(frozen=True)
class RelevanceConfig:
    """SPEC §3: Δi_c over num_images images, channel set to mu_c +- alpha sigma_c."""

    num_images: int = 100
    alpha: float = 5.0
    psi: float = DEFAULT_PSI
    seed: int = SEED
    batch_size: int = 32  # renders per generator call
    chunk_channels: int = 16  # channels per work file (the resume and sharding unit)
    layers: tuple | None = None  # style-layer indices to measure; None: every conv layer (+ toRGB if asked)
    include_torgb: bool = False
    noise_mode: str = "const"
    precision: str = "fp32"  # fp32 (reference), or bf16 / fp16 autocast for render + encode (GPU speed)
    method: str = "exact"  # exact (SPEC §3, renders) or jacobian (SPEC §3b, one backward per CLIP dim)
    chunk_images: int = 4  # jacobian: images per work file (its resume and sharding unit)
    vjp_batch: int = 64  # jacobian: cotangents per batched backward (memory ~ vjp_batch x activations)
    check_channels: int = 8  # jacobian: channels also measured exactly (same + disjoint images), for `extra`
    prefix_reuse: bool = True  # exact: render only from the changed layer on (layers before it are shared)
    clip_resolution_exit: int | None = None  # exact: channels at <= this many px are encoded from that skip image


@dataclass(frozen=True)
class VocabularyConfig:
    """SPEC §4: phrases embedded with the prompt templates, t(p) template-averaged and unit."""

    vocabulary: tuple = ("default",)  # entries: "demo", "english", "faces", "default", a path, or (phrases...)
    templates: str | None = None  # a template file; None: the 79 ImageNet templates
    english_size: int = 10_000  # cap on the built-in English word list
    chunk_phrases: int = 256  # phrases per work file
    text_batch_size: int = 256  # texts per encode_text call


@dataclass(frozen=True)
class LabelConfig:
    """Channel labels: the k phrases with the largest relevance @ Δt(phrase, neutral)."""

    k: int = 10
    neutral: str | None = None  # None: generator.neutral (demo: "shape"); other generators must name it


@dataclass(frozen=True)
class IndexConfig:
    """FAISS inner-product indexes: exact up to exact_limit vectors, HNSW above (recall@10 measured)."""

    exact_limit: int = 100_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    recall_queries: int = 256


@dataclass(frozen=True)
class BuildConfig:
    stats: StatsConfig = StatsConfig()
    relevance: RelevanceConfig = RelevanceConfig()
    vocabulary: VocabularyConfig = VocabularyConfig()
    labels: LabelConfig = LabelConfig()
    index: IndexConfig = IndexConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# flat build_atlas keyword -> (stage, field); psi and seed set both stages that sample
_FLAT = {
    "num_samples": [("stats", "num_samples")],
    "stats_batch_size": [("stats", "batch_size")],
    "stats_chunk_size": [("stats", "chunk_size")],
    "psi": [("stats", "psi"), ("relevance", "psi")],
    "seed": [("stats", "seed"), ("relevance", "seed")],
    "num_images": [("relevance", "num_images")],
    "alpha": [("relevance", "alpha")],
    "batch_size": [("relevance", "batch_size")],
    "chunk_channels": [("relevance", "chunk_channels")],
    "layers": [("relevance", "layers")],
    "include_torgb": [("relevance", "include_torgb")],
    "noise_mode": [("relevance", "noise_mode")],
    "precision": [("relevance", "precision")],
    "relevance_method": [("relevance", "method")],
    "chunk_images": [("relevance", "chunk_images")],
    "vjp_batch": [("relevance", "vjp_batch")],
    "check_channels": [("relevance", "check_channels")],
    "prefix_reuse": [("relevance", "prefix_reuse")],
    "clip_resolution_exit": [("relevance", "clip_resolution_exit")],
    "vocabulary": [("vocabulary", "vocabulary")],
    "templates": [("vocabulary", "templates")],
    "english_size": [("vocabulary", "english_size")],
    "chunk_phrases": [("vocabulary", "chunk_phrases")],
    "text_batch_size": [("vocabulary", "text_batch_size")],
    "k": [("labels", "k")],
    "label_k": [("labels", "k")],
    "neutral": [("labels", "neutral")],
    "exact_limit": [("index", "exact_limit")],
    "hnsw_m": [("index", "hnsw_m")],
    "ef_search": [("index", "ef_search")],
    "recall_queries": [("index", "recall_queries")],
}
RUN_KEYS = ("device", "shard", "progress", "keep_work", "dry_run", "models")  # how to run, not what to compute


def make_config(**flat) -> tuple[BuildConfig, dict]:
    """Split build_atlas keywords into a BuildConfig (what is computed) and run options (how)."""
    unknown = sorted(set(flat) - set(_FLAT) - set(RUN_KEYS))
    if unknown:
        raise AtlasError(
            f"unknown build option(s) {', '.join(unknown)}; valid ones are "
            f"{', '.join(sorted(list(_FLAT) + list(RUN_KEYS)))}."
        )
    parts = {name: {} for name in ("stats", "relevance", "vocabulary", "labels", "index")}
    for key, value in flat.items():
        if key in RUN_KEYS or value is None and key not in ("layers", "neutral", "templates"):
            continue
        for stage, name in _FLAT[key]:
            parts[stage][name] = _normalise(key, value)
    cfg = BuildConfig(
        stats=StatsConfig(**parts["stats"]),
        relevance=RelevanceConfig(**parts["relevance"]),
        vocabulary=VocabularyConfig(**parts["vocabulary"]),
        labels=LabelConfig(**parts["labels"]),
        index=IndexConfig(**parts["index"]),
    )
    validate(cfg)
    return cfg, {k: flat[k] for k in RUN_KEYS if k in flat}


def _normalise(key, value):
    if key == "layers" and value is not None:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        try:
            return tuple(sorted({int(v) for v in value}))
        except (TypeError, ValueError):
            raise AtlasError(
                f"layers must be comma-separated style-layer indices such as 0,2,3, got {value!r}."
            ) from None
    if key == "vocabulary":
        return vocabulary_entries(value)
    if key == "templates" and value is not None and not isinstance(value, str):
        if hasattr(value, "__fspath__"):
            return str(value)
        return tuple(value)
    return value


def _split_spec(spec: str) -> tuple:
    """'faces,english' -> ('faces', 'english'); an existing file path stays whole even with commas."""
    from pathlib import Path

    if Path(spec).expanduser().is_file():
        return (spec,)
    return tuple(part.strip() for part in spec.split(",") if part.strip())


def vocabulary_entries(value) -> tuple:
    """The `vocabulary` option -> entries: a selector string (demo, english, faces, default, a file path) or
    a tuple of phrases. A string is a comma-separated list of selectors; a list of strings is phrases
    (CONTRACT.md); a list holding lists or paths combines them (lists are phrases, the rest selectors).
    """
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        return _split_spec(str(value))
    value = list(value)
    if all(isinstance(v, str) for v in value):
        return (tuple(value),)
    out = []
    for v in value:
        if isinstance(v, (list, tuple)):
            out.append(tuple(str(p) for p in v))
        elif isinstance(v, str) or hasattr(v, "__fspath__"):
            out.extend(_split_spec(str(v)))
        else:
            raise AtlasError(f"vocabulary entry {v!r} is not a selector, a path or a list of phrases.")
    return tuple(out)


MAX_ALPHA = 1000.0  # perturbations beyond this many stds only overflow (the reference uses 5)


def check_inputs(alpha=None, psi=None, seed=None, neutral=None) -> None:
    """The numbers and words a person types, checked before any model is loaded (one-line AtlasError)."""
    from models.device import check_seed
    from models.numbers import check_finite
    from models.prompts import validate_prompt

    if alpha is not None and not 0 < check_finite(alpha, "alpha") <= MAX_ALPHA:
        raise AtlasError(
            f"alpha must be a finite number in (0, {MAX_ALPHA:g}] standard deviations (the reference "
            f"uses 5), got {alpha!r}."
        )
    if psi is not None and not 0 < check_finite(psi, "psi") <= 1:
        raise AtlasError(f"psi must be in (0, 1] (the reference uses 0.7), got {psi!r}.")
    if seed is not None:
        check_seed(seed)
    if neutral is not None:
        validate_prompt(neutral)


def validate(cfg: BuildConfig) -> None:
    s, r, v, lab = cfg.stats, cfg.relevance, cfg.vocabulary, cfg.labels
    check_inputs(alpha=r.alpha, psi=s.psi, seed=s.seed, neutral=lab.neutral)
    check_inputs(psi=r.psi, seed=r.seed)
    checks = [
        (s.num_samples >= 2, f"num_samples must be at least 2 (got {s.num_samples}); the std needs two samples"),
        (r.num_images >= 2, f"num_images must be at least 2 (got {r.num_images}); consistency compares image pairs"),
        (r.alpha > 0, f"alpha must be positive (got {r.alpha}); it is the perturbation in standard deviations"),
        (0 < s.psi <= 1 and 0 < r.psi <= 1, "psi must be in (0, 1]; the reference uses 0.7"),
        (
            min(s.batch_size, s.chunk_size, r.batch_size, r.chunk_channels, v.chunk_phrases, v.text_batch_size) >= 1,
            "batch and chunk sizes must be positive integers",
        ),
        (lab.k >= 1, f"k must be at least 1 (got {lab.k})"),
        (v.english_size >= 1, f"english_size must be at least 1 (got {v.english_size})"),
        (
            r.noise_mode in ("const", "none", "random"),
            f"noise_mode must be const, none or random (got {r.noise_mode!r})",
        ),
        (r.precision in ("fp32", "bf16", "fp16"), f"precision must be fp32, bf16 or fp16 (got {r.precision!r})"),
        (r.method in ("exact", "jacobian"), f"relevance_method must be exact or jacobian (got {r.method!r})"),
        (
            min(r.chunk_images, r.vjp_batch) >= 1 and r.check_channels >= 0,
            "chunk_images and vjp_batch must be positive and check_channels at least 0",
        ),
        (
            r.clip_resolution_exit is None or r.clip_resolution_exit >= 4,
            f"clip_resolution_exit must be a resolution of at least 4 px (got {r.clip_resolution_exit})",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise AtlasError(message + ".")
