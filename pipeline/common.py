"""Helpers every stage shares: seeds per chunk, the generator's device, chunk ranges, progress bars."""

from __future__ import annotations

import hashlib
import sys
import time

import torch
from tqdm.auto import tqdm

from models.latents import truncate


def chunk_seed(seed: int, stage: str, i: int) -> int:
    """A seed for chunk i of a stage that does not depend on which process computes it (or when)."""
    digest = hashlib.sha256(f"styleatlas|{stage}|{int(seed)}|{int(i)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


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
        _MEAN_W[id(generator)] = (
            torch.cat([torch.as_tensor(generator.mapping(zb)).double() for zb in z.split(1000)]).mean(0).float()
        )
    return _MEAN_W[id(generator)]


def truncated_w(generator, z: torch.Tensor, psi: float) -> torch.Tensor:
    """mapping(z) truncated toward mean_w (models/latents.py), for any generator: no `truncate` method needed."""
    w = torch.as_tensor(generator.mapping(z))  # [B, w_dim]
    return truncate(w, mean_w(generator), psi) if psi != 1 else w


def chunk_ranges(total: int, size: int) -> list[tuple[int, int]]:
    """[(start, stop)] blocks of `size` covering range(total); the same for every process and every run."""
    return [(a, min(a + size, total)) for a in range(0, total, size)]


LOG_EVERY = 30.0  # seconds between progress lines when stderr is a file or a pipe


def bar(total: int, desc: str, unit: str, enabled: bool, stream=None):
    """Progress on stderr: a tqdm bar (rate and ETA) on a terminal; in a log file or a pipe, where every redraw
    would stay, one line every LOG_EVERY seconds and one at the end; silent on non-zero ranks / progress=False."""
    stream = stream if stream is not None else sys.stderr
    if enabled and not _is_terminal(stream):
        return LogProgress(total, desc, unit, stream)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        dynamic_ncols=True,
        leave=True,
        smoothing=0.1,
        file=stream,
    )


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class LogProgress:
    """tqdm's update/close for logs: 'vocabulary: 2,560/10,000 phrase (26%), 41 s, about 2 min left'."""

    def __init__(self, total: int, desc: str, unit: str, stream, every: float | None = None):
        self.total, self.desc, self.unit, self.stream = int(total), desc, unit, stream
        self.every = LOG_EVERY if every is None else every
        self.n, self.start = 0, time.monotonic()
        self.last = self.start

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.monotonic()
        if now - self.last >= self.every and self.n < self.total:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        left = ""
        if 0 < self.n < self.total:
            left = f", about {duration(elapsed * (self.total - self.n) / self.n)} left"
        print(
            f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}{pct}, {duration(elapsed)}{left}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.total and self.n:
            self._line(time.monotonic())
            self.total = 0  # once

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3.4 h', '2.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
