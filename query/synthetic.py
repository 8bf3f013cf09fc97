"""Synthetic AtlasData (seeded random arrays in the real layout) for tests and benchmarks, no models needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import index
from models.directions import delta_t


def stylegan2_layers(conv_widths) -> list[dict]:
    """StyleSpace layer records: conv@4, toRGB@4, then (conv_up, conv, toRGB) per resolution (SPEC §1)."""
    conv_widths = list(conv_widths)
    n_blocks = (len(conv_widths) - 1) // 2
    layers = [
        dict(kind="conv", resolution=4, width=conv_widths[0], w_index=0),
        dict(kind="torgb", resolution=4, width=conv_widths[0], w_index=1),
    ]
    for b in range(1, n_blocks + 1):
        r = 4 * 2**b
        up, conv = conv_widths[2 * b - 1], conv_widths[2 * b]
        layers += [
            dict(kind="conv", resolution=r, width=up, w_index=2 * b - 1),
            dict(kind="conv", resolution=r, width=conv, w_index=2 * b),
            dict(kind="torgb", resolution=r, width=conv, w_index=2 * b + 1),
        ]
    for i, l in enumerate(layers):
        l.update(index=i, in_atlas=l["kind"] == "conv")
    return layers


def ffhq_layers() -> list[dict]:
    """The 26 layers of FFHQ 1024 config-f: 17 conv layers with 6,048 channels, 9 toRGB layers."""
    convs = [512] * 9 + [512, 256, 256, 128, 128, 64, 64, 32]  # conv input widths: 4 px, then 8..1024 px pairs
    return stylegan2_layers(convs)


def synthetic_atlas_data(
    layers=None, dim: int = 32, vocab=None, seed: int = 0, neutral: str = "shape", label_k: int = 5, path=None
) -> index.AtlasData:
    """Random unit relevance rows, positive stds and unit phrase embeddings; labels computed from them."""
    rng = np.random.default_rng(seed)
    layers = layers if layers is not None else stylegan2_layers([16, 16, 12, 8, 8])
    vocab = list(vocab) if vocab is not None else [f"phrase {i}" for i in range(50)]
    channels = np.array(
        [(l["index"], c) for l in layers if l["in_atlas"] for c in range(l["width"])], np.int64
    ).reshape(-1, 2)  # [C, 2]

    def unit(*shape):
        x = rng.standard_normal(shape).astype(np.float32)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    C = len(channels)
    layer_mean = [rng.standard_normal(l["width"]) for l in layers]
    layer_std = [rng.uniform(0.2, 2.0, l["width"]) for l in layers]
    relevance = unit(C, dim)  # [C, D]
    vocab_embeddings = unit(len(vocab), dim)  # [V, D]
    neutral_embedding = unit(dim)
    dt = delta_t(vocab_embeddings, neutral_embedding)  # [V, D]
    score = relevance @ dt.T  # [C, V]
    k = min(label_k, len(vocab))
    labels_index = np.argsort(-score, axis=1)[:, :k].astype(np.int64)
    return index.AtlasData(
        path=Path(path) if path else Path("synthetic"),
        channels=channels,
        relevance=relevance,
        consistency=rng.uniform(0, 1, C).astype(np.float32),
        style_mean=np.array([layer_mean[l][c] for l, c in channels]),
        style_std=np.array([layer_std[l][c] for l, c in channels]),
        layer_mean=layer_mean,
        layer_std=layer_std,
        layers=layers,
        vocab=vocab,
        vocab_embeddings=vocab_embeddings,
        templates=["a photo of a {}.", "a {}."],
        neutral=neutral,
        neutral_embedding=neutral_embedding,
        labels_index=labels_index,
        labels_score=np.take_along_axis(score, labels_index, 1).astype(np.float32),
        config={},
        generator_fingerprint="synthetic",
        embedder_fingerprint="synthetic",
    )
