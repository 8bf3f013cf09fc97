"""Edit strips and channel grids: render, edit along a direction at several alphas, save a PNG with its settings."""

from __future__ import annotations

import numpy as np
import torch

from index.io import refuse_inside
from query.checks import check_alpha, check_latent
from query.config import GridConfig, StripConfig
from query.media import cell_size, image_grid, load_latent, png_path, save_png
from query.picture import Layout, alpha_label, check_outputs, labelled_grid, save_frames, save_styles


def _settings(atlas, **extra) -> dict:
    return dict(
        atlas=str(atlas.data.path),
        generator_fingerprint=atlas.data.generator_fingerprint,
        embedder_fingerprint=atlas.data.embedder_fingerprint,
        **extra,
    )


def _image_change(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Mean RGB per image before and after, and the mean absolute pixel change (in [-1, 1] units)."""
    return dict(
        mean_rgb_before=a.float().mean((2, 3)).tolist(),
        mean_rgb_after=b.float().mean((2, 3)).tolist(),
        mean_abs_change=float((b.float() - a.float()).abs().mean()),
    )


@torch.no_grad()
def edit_strip(
    atlas,
    d,
    out,
    alphas,
    seeds=None,
    latent=None,
    psi: float = StripConfig.psi,
    noise_mode: str = StripConfig.noise_mode,
    cell: int = StripConfig.cell,
    frames=None,
    latents=None,
) -> dict:
    """One row per latent: the original, then the edit at every alpha. Returns the numbers (also in the PNG).

    frames: a folder for every image at full resolution; latents: a .pt / .npz file for the edited S codes.
    """
    png_path(out)  # before any rendering
    refuse_inside(atlas.data.path, out, "image")
    check_outputs(frames, latents, atlas.data.path)
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
    settings = _settings(
        atlas,
        prompt=d.prompt,
        neutral=d.neutral,
        beta=d.beta,
        top_k=d.top_k,
        num_c=d.num_c,
        alphas=[float(a) for a in alphas],
        noise_mode=noise_mode,
        method="global",
        **source,
    )
    row_labels = [f"seed {s}" for s in seeds] if latent is None else [f"latent {i}" for i in range(len(ws))]
    columns = ["original"] + [alpha_label(a) for a in alphas]
    kept = f"top {d.top_k}" if d.top_k else f"beta {d.beta:g}" if d.beta is not None else "beta per term"
    header = f"{d.prompt!r} from neutral {d.neutral!r}; {kept}; {d.num_c} channels; method global"
    settings["layout"] = _save_labelled(out, rows, cell, header, columns, row_labels, settings)
    settings["out"] = str(out)
    if frames is not None:
        settings["frames"] = save_frames(frames, rows, row_labels, columns, _frame_settings(settings))
    if latents is not None:
        gen = atlas.generator
        styles = gen.styles(check_latent(ws, gen))
        codes = [atlas.apply(styles, d, a) for a in alphas]  # A x L x [B, width]
        per_layer = [torch.stack([c[layer] for c in codes], 1) for layer in range(len(styles))]  # L x [B, A, width]
        settings["latents"] = save_styles(latents, per_layer, ws, [float(a) for a in alphas], _frame_settings(settings))
    settings["top"] = [dict(layer=l, channel=c, score=s) for l, c, s in d.top(10)]
    settings["changes"] = [dict(alpha=float(a), **_image_change(original, e)) for a, e in zip(alphas, edited)]
    return settings


@torch.no_grad()
def channel_grid(
    atlas,
    layer: int,
    channel: int,
    out,
    alpha: float = GridConfig.alpha,
    steps: int = GridConfig.steps,
    seeds=GridConfig.seeds,
    psi: float = GridConfig.psi,
    noise_mode: str = "const",
    cell: int = GridConfig.cell,
    frames=None,
) -> dict:
    """Rows: seeds; columns: the channel set to s + a sigma_c for a in linspace(-alpha, alpha, steps)."""
    png_path(out)
    refuse_inside(atlas.data.path, out, "image")
    check_outputs(frames, atlas_dir=atlas.data.path)
    alpha = abs(check_alpha(alpha))
    alphas = np.linspace(-alpha, alpha, max(int(steps), 2)).tolist()
    d = atlas.channel_direction(layer, channel)
    ws = atlas.sample_ws(seeds, psi)  # [B, w_dim]
    columns = [atlas.edit(ws, d, a, noise_mode=noise_mode) for a in alphas]  # steps x [B, 3, H, W]
    rows = [torch.stack([c[b] for c in columns]) for b in range(len(ws))]
    settings = _settings(
        atlas,
        layer=int(layer),
        channel=int(channel),
        alphas=alphas,
        seeds=[int(s) for s in seeds],
        psi=psi,
        noise_mode=noise_mode,
        method="channel",
    )
    info = atlas.channel_info(atlas.row(layer, channel), num_labels=2)
    words = ", ".join(p for p, _ in info["labels"])
    header = (
        f"layer {layer} ({info['resolution']} px) channel {channel} set to s + alpha sigma; consistency "
        f"{info['consistency']:.2f}" + (f"; labels: {words}" if words else "")
    )
    row_labels, columns = [f"seed {s}" for s in seeds], [alpha_label(a) for a in alphas]
    settings["layout"] = _save_labelled(out, rows, cell, header, columns, row_labels, settings)
    settings["out"] = str(out)
    if frames is not None:
        settings["frames"] = save_frames(frames, rows, row_labels, columns, _frame_settings(settings))
    return settings


def _save_labelled(out, rows, cell, header, columns, row_labels, settings) -> dict:
    """The grid of `rows` under its header and labels, as a PNG with `settings`; returns where the cells sit."""
    cell_h, cell_w = cell_size(rows[0], cell)
    grid = image_grid(rows, cell)
    picture, layout = labelled_grid(
        grid, Layout(0, 0, cell_h, cell_w, 2), len(rows), len(columns), header, columns, row_labels
    )
    save_png(out, picture, dict(settings, layout=layout.to_dict()))
    return layout.to_dict()


def _frame_settings(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in ("layout", "frames", "latents", "changes", "top")}
