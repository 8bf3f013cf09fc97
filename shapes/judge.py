"""Judging text edits on the shapes world with the pixel classifier (not CLIP): which attribute a prompt asks
for, fresh samples that do not have it yet, and the share of edits that reached it and kept the rest."""

from __future__ import annotations

import numpy as np
import torch

from shapes import world
from shapes.classifier import classify

# the attribute each attribute word sets, and the value it asks for
TARGETS = {
    **{c: ("colour", i) for i, c in enumerate(world.COLOURS)},
    **{s: ("shape", i) for i, s in enumerate(world.SHAPES)},
    **{s: ("size", i) for i, s in enumerate(world.SIZES)},
    **{f"{b} background": ("background", i) for i, b in enumerate(world.BACKGROUNDS)},
}


def redness(rgb: np.ndarray) -> np.ndarray:
    """[n, 3] shape colour -> red minus the mean of green and blue."""
    return rgb[:, 0] - (rgb[:, 1] + rgb[:, 2]) / 2


@torch.no_grad()
def fresh_samples(gen, n: int, prompt: str, seed: int = 1000, psi: float = 0.7) -> tuple[torch.Tensor, list[int]]:
    """n W codes [n, w_dim] (seeds seed, seed + 1, ...) whose image is one clean shape without what `prompt` asks."""
    attr, value = TARGETS[prompt]
    seeds, ws = [], []
    for s in range(seed, seed + 40 * n):
        z = torch.randn(1, gen.z_dim, generator=torch.Generator().manual_seed(s))
        w = gen.truncate(gen.mapping(z), psi)  # [1, w_dim]
        c = classify(gen.synthesize(gen.styles(w)))
        if c["valid"][0] and c[attr][0] != value:
            seeds.append(s)
            ws.append(w)
            if len(ws) == n:
                break
    if len(ws) < n:
        raise ValueError(f"only {len(ws)} of seeds {seed}..{seed + 40 * n - 1} are valid and not {prompt!r}; need {n}")
    return torch.cat(ws), seeds


@torch.no_grad()
def pool_samples(gen, n: int, prompt: str, seed: int, psi: float = 0.7) -> tuple[torch.Tensor, dict]:
    """Pool `seed`: the first n of the 8 n latent seeds 8 n seed .. 8 n (seed + 1) - 1 (gen.sample_ws, one z per
    seed) whose image is valid and lacks what `prompt` asks, and their classifier readings: W [n, w_dim] and a
    dict of [n] arrays. Pools of one n never share a sample. The sample pools of the fallback acceptance
    (tests/test_fallbacks_shapes.py, benchmarks/fallbacks.py); one place to change if seeds map to latents anew."""
    attr, value = TARGETS[prompt]
    first = 8 * n * seed
    ws = gen.sample_ws(8 * n, seed=first, psi=psi)  # [8n, w_dim]
    c = classify(gen.synthesize(gen.styles(ws)))
    ok = np.flatnonzero(c["valid"] & (c[attr] != value))[:n]
    if len(ok) < n:
        raise ValueError(
            f"only {len(ok)} of latent seeds {first}..{first + 8 * n - 1} (pool {seed}) are valid and not "
            f"{prompt!r}; need {n}"
        )
    return ws[torch.as_tensor(ok)], {k: v[ok] for k, v in c.items()}


def judge_images(before: torch.Tensor, after: torch.Tensor, prompt: str) -> dict:
    """Share of edited images that reached the prompt's value, stayed valid and kept each other attribute
    (for "red" also: got redder by more than 0.02)."""
    attr, value = TARGETS[prompt]
    b, a = classify(before), classify(after)
    out = dict(n=len(before), reached=float((a[attr] == value).mean()), valid_after=float(a["valid"].mean()))
    if prompt == "red":
        out["redder"] = float((redness(a["rgb"]) > redness(b["rgb"]) + 0.02).mean())
    for other in world.ATTRIBUTE_NAMES:
        if other != attr:
            out[f"kept_{other}"] = float((a[other] == b[other]).mean())
    return out


@torch.no_grad()
def judge_latents(gen, ws: torch.Tensor, ws_edit: torch.Tensor, prompt: str) -> dict:
    """judge_images on the images of two sets of W / W+ codes."""
    return judge_images(gen.synthesize(gen.styles(ws)), gen.synthesize(gen.styles(ws_edit)), prompt)
