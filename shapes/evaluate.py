"""Zero-shot attribute accuracy of an embedder on shapes-world images (template-averaged class prompts), and the
demo generator's samples and their quality (its StyleSpace probe is shapes.probe)."""

from __future__ import annotations

import numpy as np
import torch

from models.text import embed_phrases
from shapes import world
from shapes.captions import class_phrases


@torch.no_grad()
def zero_shot_read(embedder, images: torch.Tensor, templates=None, names=None) -> dict[str, np.ndarray]:
    """What the embedder reads per attribute (colour, shape, size, background, or those in `names`): [n] class
    indices, the argmax over the class prompts t(p) (world index conventions, as the pixel classifier's)."""
    img = embedder.encode_image(images).float()  # [n, D]
    out = {}
    for name, phrases in class_phrases().items():
        if names is None or name in names:
            text = embed_phrases(embedder, phrases, templates).to(img.device)  # [K, D]
            out[name] = (img @ text.T).argmax(1).cpu().numpy()
    return out


def zero_shot(embedder, images: torch.Tensor, attrs: dict, templates=None) -> dict[str, float]:
    """Accuracy per attribute (colour, shape, size, background): argmax over the class prompts t(p)."""
    return {
        name: float((pred == attrs[name]).mean()) for name, pred in zero_shot_read(embedder, images, templates).items()
    }


def held_out(n: int = 1000, seed: int = 12345) -> tuple[torch.Tensor, dict]:
    """The held-out procedural evaluation set (its seed is never used for training)."""
    return world.sample(n, np.random.default_rng(seed))


@torch.no_grad()
def generator_samples(gen, n: int = 1000, psi: float = 0.7, seed: int = 0, batch: int = 250):
    """(z [n, z_dim], images [n, 3, R, R]) for n seeded z at truncation psi, noise "const"."""
    z = torch.randn(n, gen.z_dim, generator=torch.Generator().manual_seed(seed))  # [n, z_dim]
    images = torch.cat([gen(z[i : i + batch], psi=psi) for i in range(0, n, batch)])
    return z, images


@torch.no_grad()
def generator_quality(gen, n: int = 1000, psi: float = 0.7, seed: int = 0) -> dict[str, float]:
    """Share of valid samples per the pixel classifier, and (for the demo map from z) attribute agreement; also
    shape agreement per (size, shape) cell of z ("shape_as_z_cells": {"small cross": share, ...}; None where no
    valid sample of the cell was drawn): small shapes drawn as blobs show up there (issue 17)."""
    from shapes.classifier import classify
    from shapes.train_generator import attributes_from_z

    z, images = generator_samples(gen, n, psi, seed)
    pred = classify(images)
    out = dict(valid=float(pred["valid"].mean()))
    target = attributes_from_z(z)
    ok = pred["valid"]
    for name in world.ATTRIBUTE_NAMES:  # among valid samples: does the image show what z asked for?
        out[f"{name}_as_z"] = float((pred[name][ok] == target[name][ok]).mean()) if ok.any() else 0.0
    cells = {}
    for name, size, shape in world.cells():
        cell = ok & (target["size"] == size) & (target["shape"] == shape)
        cells[name] = float((pred["shape"][cell] == shape).mean()) if cell.any() else None
    out["shape_as_z_cells"] = cells
    return out
