"""W and W+ latents (SPEC §1): the shape every generator takes, and truncation toward mean_w."""

from __future__ import annotations

import numpy as np
import torch

from models.errors import AtlasError


def check_latent_shape(ws, w_dim: int, num_ws: int) -> torch.Tensor:
    """ws as a tensor when it is W [B, w_dim] or W+ [B, num_ws, w_dim] floats with B >= 1, else one AtlasError."""
    ws = ws if isinstance(ws, torch.Tensor) else torch.as_tensor(np.asarray(ws))
    w_dim, num_ws = int(w_dim), int(num_ws)
    ok = (ws.ndim == 2 and ws.shape[1] == w_dim) or (ws.ndim == 3 and tuple(ws.shape[1:]) == (num_ws, w_dim))
    if not ok or ws.shape[0] < 1 or not ws.is_floating_point():
        raise AtlasError(
            f"latent has shape {tuple(ws.shape)} ({ws.dtype}); this generator takes W [B, {w_dim}] "
            f"or W+ [B, {num_ws}, {w_dim}] floats."
        )
    return ws


def truncate(w: torch.Tensor, mean_w: torch.Tensor, psi: float) -> torch.Tensor:
    """w' = mean_w + psi (w - mean_w) for [B, w_dim] or [B, num_ws, w_dim]; psi = 1 is w itself (no truncation)."""
    if psi == 1:
        return w
    centre = torch.as_tensor(mean_w).to(dtype=w.dtype, device=w.device)
    return centre + psi * (w - centre)
