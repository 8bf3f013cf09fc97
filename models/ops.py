"""The low-level operations of StyleGAN2 without custom CUDA: FIR kernels, upfirdn2d, the fused leaky ReLU.

The counterpart of rosinality's `op/` package, written with plain convolutions so it runs anywhere torch runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_kernel(k) -> torch.Tensor:
    """Separable FIR kernel from a 1-D tap list, normalised to sum 1."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero-insert upsample by `up`, pad (negative crops), then filter every channel with `kernel`."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw).expand(c, 1, kh, kw)
    return F.conv2d(x, weight, groups=c)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2, scale: float = 2**0.5
) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2), bias broadcast over channel dimension 1."""
    shape = [1, bias.shape[0]] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape).to(x.dtype), negative_slope) * scale
