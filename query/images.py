"""Image files in (PNG / JPEG ...): read, centre-crop to a square, resize to the generator's resolution, [-1, 1].

FFHQ generators and e4e expect FFHQ-aligned faces (eyes and mouth where FFHQ puts them); the centre crop
does no alignment (README: "Editing your own images").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.errors import AtlasError


def read_image(path, resolution: int) -> torch.Tensor:
    """One image file -> [3, R, R] in [-1, 1]: RGB, centre square crop, Lanczos resize to `resolution`."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        raise AtlasError(f"image {path} does not exist; pass a PNG or JPEG file.")
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise AtlasError(f"{path} is not a readable image ({type(exc).__name__}); pass a PNG or JPEG file.") from None
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    if side != resolution:
        im = im.resize((resolution, resolution), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1)  # [3, R, R] in [0, 255]
    return x / 127.5 - 1


def read_images(paths, resolution: int) -> torch.Tensor:
    """Image files -> [B, 3, R, R] in [-1, 1] (one-line AtlasError for anything that is not an image)."""
    paths = list(paths)
    if not paths:
        raise AtlasError("give at least one image file.")
    return torch.stack([read_image(p, resolution) for p in paths])


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [B, 3, H, W] images in [-1, 1], measured on [0, 1] pixels (clamped)."""
    a = (a.detach().float().clamp(-1, 1) + 1) / 2
    b = (b.detach().float().to(a.device).clamp(-1, 1) + 1) / 2
    mse = (a - b).square().flatten(1).mean(1).clamp_min(1e-12)  # [B]
    return 10 * torch.log10(1 / mse)
