"""SPEC §5 global directions from arrays: Δt -> scores r -> beta threshold -> max-abs normalise -> Δs = r sigma.

Everything here is numpy on the atlas's own arrays; one function serves a single prompt ([D]) and a
batch ([N, D]) so that bulk export and `Atlas.direction` compute exactly the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from models.errors import AtlasError
from models.stylespace import to_layers

DEFAULT_BETA = 0.15
AUTO_BETAS = tuple(round(0.10 + 0.01 * i, 2) for i in range(20))  # SPEC §5: 0.10 .. 0.29
AUTO_MIN_CHANNELS = 20  # auto-beta keeps MORE than this many channels


def check_beta(beta) -> None:
    if isinstance(beta, str):
        if beta != "auto":
            raise AtlasError(f"beta must be a number in (0, 1) or 'auto', got {beta!r}.")
        return
    if not (isinstance(beta, (int, float, np.floating)) and math.isfinite(beta) and 0 < beta < 1):
        raise AtlasError(f"beta must be in (0, 1) (the paper uses 0.08-0.3, default 0.15), got {beta!r}.")


def floor_beta(x: float) -> float:
    """max|r| rounded down to a beta a person can type: 3 decimals, or 2 significant digits below 0.001."""
    if x >= 1e-3:
        return math.floor(x * 1000 + 1e-9) / 1000
    if x <= 0:
        return 0.0
    scale = 10 ** (1 - math.floor(math.log10(x)))
    return math.floor(x * scale) / scale


def auto_betas(abs_scores: np.ndarray) -> np.ndarray:
    """Per row of |r| [N, C]: the largest beta in AUTO_BETAS keeping more than AUTO_MIN_CHANNELS channels.

    Keeping more than 20 channels at beta means the 21st largest |r| is >= beta, so one partial sort per row
    decides it. Rows where no grid value qualifies (small atlases, weak prompts) get the smallest, 0.10.
    """
    n, c = abs_scores.shape
    if c <= AUTO_MIN_CHANNELS:
        return np.full(n, AUTO_BETAS[0])
    kth = -np.partition(-abs_scores, AUTO_MIN_CHANNELS, axis=1)[:, AUTO_MIN_CHANNELS]  # [N] 21st largest
    grid = np.asarray(AUTO_BETAS)
    # the grid value itself, not a float sum, so that |r| >= beta agrees with what we report
    pick = np.searchsorted(grid, kth, side="right") - 1  # [N] largest grid beta <= kth
    return grid[np.clip(pick, 0, len(grid) - 1)]


def select_channels(abs_scores: np.ndarray, beta, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """keep mask [N, C] and the beta used per row [N] for |r| [N, C] (beta a number or "auto").

    top_k keeps the N strongest |r| of each row instead of thresholding (beta reported as the weakest kept).
    """
    a = abs_scores  # [N, C]
    if top_k is not None:
        if int(top_k) < 1:
            raise AtlasError(f"top_k must be at least 1, got {top_k}.")
        k = min(int(top_k), a.shape[1])
        idx = np.argpartition(-a, k - 1, axis=1)[:, :k]  # [N, k]
        keep = np.zeros(a.shape, bool)
        np.put_along_axis(keep, idx, True, axis=1)
        return keep, np.take_along_axis(a, idx, axis=1).min(1)
    betas = auto_betas(a) if isinstance(beta, str) else np.full(a.shape[0], float(beta))  # [N]
    return a >= betas[:, None], betas


def no_channel_message(max_abs: float, beta, prompt: str) -> str:
    if max_abs <= 0:
        return (
            f"no channel of the atlas responds to {prompt!r} at all (every score is 0); try another prompt or neutral."
        )
    used = "auto-beta (0.10)" if isinstance(beta, str) else f"beta {beta:g}"
    return (
        f"no channel passes {used} for {prompt!r} (the strongest scores {max_abs:.4f}); use beta <= "
        f"{floor_beta(max_abs):g}, or top_k=N."
    )


GEMV_ROWS_ELEMENTS = 400_000  # OpenBLAS runs a gemv this small on one thread


def single_scores(rel: np.ndarray, delta_t: np.ndarray) -> np.ndarray:
    """relevance @ Δt for one prompt [C], in row blocks small enough for BLAS to stay on one thread.

    A threaded gemv of 6,048 x 512 costs 8-12 ms on busy cores against 0.5 ms single-threaded: waking
    threads costs more than the 12 MB read it splits.
    """
    out = np.empty(len(rel), np.float32)  # [C]
    rows = max(1, GEMV_ROWS_ELEMENTS // max(rel.shape[1], 1))
    for a in range(0, len(rel), rows):
        np.dot(rel[a : a + rows], delta_t, out=out[a : a + rows])
    return out


def global_directions(
    relevance: np.ndarray,
    style_std: np.ndarray,
    delta_t: np.ndarray,
    beta=DEFAULT_BETA,
    top_k: int | None = None,
    block: int = 256,
    keep_scores: bool = True,
):
    """SPEC §5 for N text directions at once: (scores [N, C], delta_s [N, C], num_c [N], beta [N], max|r| [N]).

    One matrix product relevance @ ΔT for the whole batch; thresholding and scaling run in row blocks to
    bound the temporaries. Rows whose channels all fall below beta get delta_s = 0 and num_c = 0 (callers
    turn that into an error; never NaN). keep_scores=False writes Δs over the product (scores come back None).
    """
    check_beta(beta)
    delta_t = np.atleast_2d(np.asarray(delta_t, np.float32))  # [N, D]
    rel = np.asarray(relevance, np.float32)  # [C, D]
    if len(delta_t) == 1 and top_k is None and not isinstance(beta, str):
        return _one_direction(rel, style_std, delta_t[0], float(beta), keep_scores)
    scores = delta_t @ rel.T if len(delta_t) > 1 else single_scores(rel, delta_t[0])[None]  # [N, C] r
    return directions_from_scores(scores, style_std, beta, top_k, block, keep_scores)


def directions_from_scores(
    scores: np.ndarray,
    style_std: np.ndarray,
    beta=DEFAULT_BETA,
    top_k: int | None = None,
    block: int = 256,
    keep_scores: bool = True,
):
    """The SPEC §5 steps after the product, for scores r [N, C]; returns what global_directions returns."""
    delta_s = np.empty_like(scores) if keep_scores else scores  # [N, C]
    n, c = scores.shape
    num_c, betas, max_abs = np.zeros(n, np.int64), np.zeros(n), np.zeros(n)
    std = np.asarray(style_std, np.float32)  # [C]
    abs_buf = np.empty((min(block, n), c), np.float32)  # reused: fresh pages cost more than the arithmetic
    for a in range(0, n, block):
        r = scores[a : a + block]  # [b, C]
        a_r = np.abs(r, out=abs_buf[: len(r)])  # [b, C]
        keep, used = select_channels(a_r, beta, top_k)
        # max|kept| = max|r| whenever anything is kept (keep is |r| >= beta, or the top k, so the top is in it)
        peak = a_r.max(1) if c else np.zeros(len(r), np.float32)  # [b]
        ok = (peak >= used) & (peak > 0)
        out = delta_s[a : a + block]
        np.multiply(r, keep, out=out)  # r[|r| < beta] = 0
        out *= std  # Δs_c = r_c sigma_c ...
        out *= np.where(ok, 1 / np.where(ok, peak, 1), 0).astype(np.float32)[:, None]  # ... with max|r| -> 1
        num_c[a : a + block] = np.count_nonzero(out, axis=1)  # as Direction.num_c: channels that move
        betas[a : a + block] = used
        max_abs[a : a + block] = peak
    return (scores if keep_scores else None), delta_s, num_c, betas, max_abs


def one_direction(rel: np.ndarray, style_std: np.ndarray, delta_t: np.ndarray, beta: float):
    """SPEC §5 for one prompt and a numeric beta (what a query asks): (scores [C], Δs [C], num_c, max|r|).

    The same arithmetic in the same order as the batch path (directions_from_scores), without its allocations
    and broadcasts, which cost as much as the elementwise work on one row.
    """
    r = single_scores(rel, delta_t)  # [C] scores
    a_r = np.abs(r)  # [C]
    peak = a_r.max() if len(r) else np.float32(0)
    delta_s = np.multiply(r, a_r >= beta)  # r[|r| < beta] = 0
    delta_s *= np.asarray(style_std, np.float32)  # Δs_c = r_c sigma_c ...
    delta_s *= np.float32(1 / peak) if peak >= beta and peak > 0 else np.float32(0)  # ... with max|r| -> 1
    return r, delta_s, int(np.count_nonzero(delta_s)), float(peak)


def _one_direction(rel: np.ndarray, style_std: np.ndarray, delta_t: np.ndarray, beta: float, keep_scores: bool):
    """one_direction in global_directions' shapes ([1, C] arrays and [1] counts)."""
    r, delta_s, num_c, peak = one_direction(rel, style_std, delta_t, beta)
    return (r[None] if keep_scores else None), delta_s[None], np.array([num_c]), np.array([beta]), np.array([peak])


@dataclass
class Direction:
    """A global direction in StyleSpace (SPEC §5), row-aligned with the atlas's channels."""

    prompt: str
    neutral: str
    beta: float | None  # the threshold used (top_k: the weakest kept |score|)
    scores: np.ndarray  # [C] signed r = relevance @ Δt, before thresholding
    delta_s: np.ndarray  # [C] the paper's Δs (zero where not kept)
    channels: np.ndarray  # [C, 2] (layer, channel) of every row
    delta_t: np.ndarray | None = None  # [D] unit text direction (None for a composition)
    top_k: int | None = None
    layer_widths: list = field(default_factory=list)  # width of every style layer (toRGB too)
    components: list = field(default_factory=list)  # composition: [(prompt, weight, Direction)]
    overlaps: list = field(default_factory=list)  # composition: pairwise shared channels

    @property
    def num_c(self) -> int:
        """Channels the edit moves (nonzero Δs)."""
        return int(np.count_nonzero(self.delta_s))

    @property
    def active(self) -> np.ndarray:
        """Row indices of the channels the edit moves, strongest |Δs / sigma| first."""
        rows = np.flatnonzero(self.delta_s)
        return rows[np.argsort(-np.abs(self.scores[rows]), kind="stable")]

    def top(self, k: int = 10) -> list[tuple[int, int, float]]:
        """(layer, channel, score) of the k channels with the largest |score| that the edit moves, descending.

        Channels below beta are not listed even when fewer than k move: the edit leaves them alone.
        """
        rows = self.active[: max(0, int(k))]
        return [(int(self.channels[r, 0]), int(self.channels[r, 1]), float(self.scores[r])) for r in rows]

    def to_styles(self) -> list[np.ndarray]:
        """Δs per style layer ([width] float32 each, every layer, zero for toRGB and layers not in the atlas)."""
        return to_layers(self.delta_s, self.channels, self.layer_widths)

    def to_dict(self, k: int = 10) -> dict:
        d = dict(
            prompt=self.prompt,
            neutral=self.neutral,
            beta=self.beta,
            top_k=self.top_k,
            num_c=self.num_c,
            top=[dict(layer=l, channel=c, score=s) for l, c, s in self.top(k)],
        )
        if self.components:
            d["components"] = [dict(prompt=p, weight=w, num_c=c.num_c, beta=c.beta) for p, w, c in self.components]
            d["overlaps"] = self.overlaps
        return d


def parse_beta(text: str):
    """beta from text: a number in (0, 1) or "auto" (SPEC §5), else one-line error."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        beta = float(text)
    except ValueError:
        raise AtlasError(f"beta must be a number in (0, 1) or 'auto', got {text!r}.") from None
    check_beta(beta)
    return beta
