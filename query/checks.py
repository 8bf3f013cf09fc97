"""The small checks every query module shares: an edit strength, a latent, rendered images (one message each).

A leaf of the query layer (it imports nothing from query/), so query/atlas.py and the fallbacks it calls
(edit_text, losses, mapper_train, media) can all use it without importing each other. torch is imported
inside: an atlas-only query never loads it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from models.errors import AtlasError

if TYPE_CHECKING:
    import torch

MAX_ALPHA = 1000.0  # |alpha| beyond this only saturates or overflows (float32 styles)


def check_alpha(alpha) -> float:
    """alpha as a float, unless it is not a number, not finite or beyond ±MAX_ALPHA."""
    try:
        alpha = float(alpha)
    except (TypeError, ValueError, OverflowError):
        raise AtlasError(f"alpha must be a number (typically -10..10), got {alpha!r}.") from None
    if not math.isfinite(alpha) or abs(alpha) > MAX_ALPHA:
        raise AtlasError(f"alpha must be finite and within ±{MAX_ALPHA:g} (typically -10..10), got {alpha}.")
    return alpha


def check_images(images) -> torch.Tensor:
    """Rendered images, unless they hold NaN or inf (they would be saved as black pictures)."""
    import torch

    if isinstance(images, torch.Tensor) and not torch.isfinite(images).all():
        raise AtlasError(
            "the generator produced NaN or infinite pixels (an overflow: a smaller --alpha, or fp32); "
            "no image was written."
        )
    return images


def check_latent(ws, gen) -> torch.Tensor:
    """ws as a float tensor on the generator's device: [B, w_dim] or [B, num_ws, w_dim], else one-line error."""
    import torch

    from models.latents import check_latent_shape

    ws = check_latent_shape(ws, gen.w_dim, gen.num_ws)
    if not torch.isfinite(ws).all():
        raise AtlasError("latent holds NaN or infinite values; pass finite W or W+ codes.")
    mean_w = torch.as_tensor(gen.mean_w)
    return ws.to(device=mean_w.device, dtype=mean_w.dtype)
