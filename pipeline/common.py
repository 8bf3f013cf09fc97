"""Helpers every stage shares: seeds per chunk, the generator's device, chunk ranges, progress bars."""
from __future__ import annotations

import hashlib

import torch
from tqdm.auto import tqdm


def chunk_seed(seed: int, stage: str, i: int) -> int:
    """A seed for chunk i of a stage that does not depend on which process computes it (or when)."""
    digest = hashlib.sha256(f"styleatlas|{stage}|{int(seed)}|{int(i)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def generator_device(generator) -> torch.device:
    """Where the generator computes: the device of mean_w (CONTRACT), else of its parameters, else CPU."""
    mean_w = getattr(generator, "mean_w", None)
    if isinstance(mean_w, torch.Tensor):
        return mean_w.device
    params = getattr(generator, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


_MEAN_W: dict[int, torch.Tensor] = {}


@torch.no_grad()
def mean_w(generator) -> torch.Tensor:
    """generator.mean_w, or for a generator without one the mean of mapping(z) over 10,000 seeded z
    (CONTRACT's rule for checkpoints without latent_avg), computed once per generator."""
    known = getattr(generator, "mean_w", None)
    if known is not None:
        return torch.as_tensor(known)
    if id(generator) not in _MEAN_W:
        z = torch.randn(10_000, int(generator.z_dim), generator=torch.Generator().manual_seed(0))
        _MEAN_W[id(generator)] = torch.cat([torch.as_tensor(generator.mapping(zb)).double()
                                            for zb in z.split(1000)]).mean(0).float()
    return _MEAN_W[id(generator)]


def truncate(generator, w: torch.Tensor, psi: float) -> torch.Tensor:
    """w' = mean_w + psi (w - mean_w) (SPEC §1), without relying on a `truncate` method."""
    w = torch.as_tensor(w)
    if psi == 1:
        return w
    centre = mean_w(generator).to(dtype=w.dtype, device=w.device)
    return centre + psi * (w - centre)


def chunk_ranges(total: int, size: int) -> list[tuple[int, int]]:
    """[(start, stop)] blocks of `size` covering range(total); the same for every process and every run."""
    return [(a, min(a + size, total)) for a in range(0, total, size)]


def bar(total: int, desc: str, unit: str, enabled: bool):
    """A tqdm bar (rate and ETA) on stderr, or a silent one on non-zero ranks / progress=False."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, leave=True,
                smoothing=0.1)
