"""Edit strips and channel grids: render, edit along a direction at several alphas, save a PNG with its settings."""
from __future__ import annotations

import numpy as np
import torch

from index.io import refuse_inside
from query.media import image_grid, load_latent, png_path, save_png


def _settings(atlas, **extra) -> dict:
    return dict(atlas=str(atlas.data.path), generator_fingerprint=atlas.data.generator_fingerprint,
                embedder_fingerprint=atlas.data.embedder_fingerprint, **extra)


def _image_change(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Mean RGB per image before and after, and the mean absolute pixel change (in [-1, 1] units)."""
    return dict(mean_rgb_before=a.float().mean((2, 3)).tolist(), mean_rgb_after=b.float().mean((2, 3)).tolist(),
                mean_abs_change=float((b.float() - a.float()).abs().mean()))


@torch.no_grad()
def edit_strip(atlas, d, out, alphas, seeds=None, latent=None, psi: float = 0.7, noise_mode: str = "const",
               cell: int = 128) -> dict:
    """One row per latent: the original, then the edit at every alpha. Returns the numbers (also in the PNG)."""
    png_path(out)  # before any rendering
    refuse_inside(atlas.data.path, out, "image")
    gen = atlas.generator
    if latent is not None:
        ws = load_latent(latent, int(gen.w_dim), int(gen.num_ws))  # [B, w_dim] or [B, num_ws, w_dim]
        source = dict(latent=str(latent), latent_shape=list(ws.shape))
    else:
        ws = atlas.sample_ws(seeds, psi)  # [B, w_dim]
        source = dict(seeds=[int(s) for s in seeds], psi=psi)
    original = atlas.render(ws, noise_mode=noise_mode)  # [B, 3, H, W]
    edited = [atlas.edit(ws, d, a, noise_mode=noise_mode) for a in alphas]  # alphas x [B, 3, H, W]
    rows = [torch.stack([original[b]] + [e[b] for e in edited]) for b in range(len(ws))]  # B x [1 + A, 3, H, W]
    settings = _settings(atlas, prompt=d.prompt, neutral=d.neutral, beta=d.beta, top_k=d.top_k, num_c=d.num_c,
                         alphas=[float(a) for a in alphas], noise_mode=noise_mode, **source)
    save_png(out, image_grid(rows, cell), settings)
    settings["out"] = str(out)
    settings["top"] = [dict(layer=l, channel=c, score=s) for l, c, s in d.top(10)]
    settings["changes"] = [dict(alpha=float(a), **_image_change(original, e)) for a, e in zip(alphas, edited)]
    return settings


@torch.no_grad()
def channel_grid(atlas, layer: int, channel: int, out, alpha: float = 10.0, steps: int = 5, seeds=(0, 1, 2, 3),
                 psi: float = 0.7, noise_mode: str = "const", cell: int = 96) -> dict:
    """Rows: seeds; columns: the channel set to s + a sigma_c for a in linspace(-alpha, alpha, steps)."""
    from query.atlas import check_alpha

    png_path(out)
    refuse_inside(atlas.data.path, out, "image")
    alpha = abs(check_alpha(alpha))
    alphas = np.linspace(-alpha, alpha, max(int(steps), 2)).tolist()
    d = atlas.channel_direction(layer, channel)
    ws = atlas.sample_ws(seeds, psi)  # [B, w_dim]
    columns = [atlas.edit(ws, d, a, noise_mode=noise_mode) for a in alphas]  # steps x [B, 3, H, W]
    rows = [torch.stack([c[b] for c in columns]) for b in range(len(ws))]
    settings = _settings(atlas, layer=int(layer), channel=int(channel), alphas=alphas, seeds=[int(s) for s in seeds],
                         psi=psi, noise_mode=noise_mode)
    save_png(out, image_grid(rows, cell), settings)
    settings["out"] = str(out)
    return settings
