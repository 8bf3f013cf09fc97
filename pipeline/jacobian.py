"""SPEC §3b first-order relevance: d_k = normalise(J_k[:, c]) for every channel from D backward passes per image.

J_k = ∂ normalise(CLIP(G(s))) / ∂s at image k's style codes. One forward of a block of images keeps the graph;
the D rows of the identity are the cotangents, `vjp_batch` at a time in one batched backward
(`torch.autograd.grad(..., is_grads_batched=True)`, i.e. vmap over the vector-Jacobian product), so every
style channel (toRGB too) gets its column of J_k together. Work files hold, per block of `chunk_images`
images, the sum of the d_k and the sum of their squared norms for every atlas channel; summed over the
blocks in order they give relevance and consistency exactly as the exact path reduces its d_k (closed form,
see pipeline/relevance.py). The chunk unit is images, so a resumed or split build sums the same files.

A few channels (`check_channels`) are also measured the exact way on the same images and on a disjoint image
set (the sampling floor); the atlas records how well the two methods agree next to that floor (`extra`).
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from index.io import read_npz, write_json_atomic, write_npz_atomic
from index.work import CHECK, JACOBIAN, chunk_path, missing_chunks, work_dir
from models.stylespace import flat_index, split_layers
from pipeline import relevance as exact
from pipeline.common import bar, chunk_ranges, chunk_seed, generator_device, truncated_w
from pipeline.config import RelevanceConfig

STAGE = JACOBIAN
CHECK_FILE = CHECK


def num_chunks(cfg: RelevanceConfig) -> int:
    """Image blocks, plus one chunk for the exact check when check_channels > 0 (it is the last one)."""
    return len(chunk_ranges(cfg.num_images, cfg.chunk_images)) + (1 if cfg.check_channels > 0 else 0)


def chunk_work(cfg: RelevanceConfig, dim: int, num_channels: int) -> list[int]:
    """Forward-equivalents of every chunk: 1 + 2 D per image of a block (SPEC §3b); the check, 4 M per channel."""
    work = [(b - a) * (1 + 2 * int(dim)) for a, b in chunk_ranges(cfg.num_images, cfg.chunk_images)]
    return work + ([4 * cfg.num_images * min(cfg.check_channels, num_channels)] if cfg.check_channels > 0 else [])


@torch.no_grad()
def image_styles(generator, cfg: RelevanceConfig, stream: int = 0) -> list[torch.Tensor]:
    """The M images of seed stream `stream` (0: the images of the exact path; 1: a disjoint set)."""
    if stream == 0:
        return exact.image_styles(generator, cfg)
    g = torch.Generator().manual_seed(chunk_seed(cfg.seed, "images", stream))
    z = torch.randn(cfg.num_images, int(generator.z_dim), generator=g)  # [M, z_dim]
    w = truncated_w(generator, z.to(generator_device(generator)), cfg.psi)  # [M, w_dim]
    return [torch.as_tensor(s).detach().reshape(cfg.num_images, -1) for s in generator.styles(w)]


class _Frozen:
    """Parameters of the models stop requiring grad inside the block (only the style codes need it)."""

    def __init__(self, *models):
        self.params = []
        for m in models:
            m = getattr(m, "model", m)
            if callable(getattr(m, "parameters", None)):
                self.params += [p for p in m.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)


def jacobian_columns(
    generator, embedder, styles: list[torch.Tensor], channels: np.ndarray, cfg: RelevanceConfig
) -> torch.Tensor:
    """J_k[:, c] for the images of `styles` (per layer [K, width]) and channels [C, 2] -> [K, C, D] float32."""
    lays = sorted({int(l) for l in channels[:, 0]})
    with _Frozen(generator, embedder), torch.enable_grad():
        leaves = [s.detach().clone().requires_grad_(i in lays) for i, s in enumerate(styles)]
        with exact._autocast(leaves[0].device, cfg.precision):
            e = torch.as_tensor(embedder.encode_image(generator.synthesize(leaves, noise_mode=cfg.noise_mode)))
        e = F.normalize(e.float(), dim=-1)  # [K, D]
        K, D = e.shape
        inputs = [leaves[l] for l in lays]
        pos = {l: i for i, l in enumerate(lays)}
        cols = torch.empty(K, len(channels), D, dtype=torch.float32)  # [K, C, D]
        sel = [
            (torch.as_tensor(np.nonzero(channels[:, 0] == l)[0]), torch.as_tensor(channels[channels[:, 0] == l, 1]))
            for l in lays
        ]
        eye = torch.eye(D, device=e.device)
        for a, b in chunk_ranges(D, cfg.vjp_batch):
            v = eye[a:b, None, :].expand(b - a, K, D)  # [B, K, D] cotangents: rows a..b of the identity
            grads = torch.autograd.grad(e, inputs, grad_outputs=v, is_grads_batched=True, retain_graph=b < D)
            for l, (rows, ch) in zip(lays, sel):
                g = grads[pos[l]].float().cpu()  # [B, K, width]
                cols[:, rows, a:b] = g[:, :, ch].permute(1, 2, 0)  # [K, c_l, B]
    return cols


def direction_sums(cols: torch.Tensor, sigma: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Columns [K, C, D] -> sum_k d_k [C, D] and sum_k |d_k|^2 [C] (float64), d_k = normalise(J_k[:, c]).

    A column whose predicted change 2 alpha sigma_c |J_k[:, c]| is below the exact path's DEAD_NORM counts as
    "changed nothing" (d_k = 0), as there.
    """
    cols = cols.double()
    norm = cols.norm(dim=-1, keepdim=True)  # [K, C, 1]
    change = 2 * alpha * torch.as_tensor(sigma, dtype=torch.float64)[None, :, None] * norm
    d = torch.where(change < exact.DEAD_NORM, torch.zeros_like(cols), cols / norm.clamp_min(1e-300))  # [K, C, D]
    return d.sum(0).numpy(), d.square().sum((0, 2)).numpy()


def reduce_sums(d_sum: np.ndarray, d_sq: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
    """sum d_k [C, D], sum |d_k|^2 [C] over M images -> relevance [C, D], consistency [C] (float32), as SPEC §3."""
    d_sum = torch.as_tensor(d_sum, dtype=torch.float64)
    relevance = F.normalize(d_sum / M, dim=-1)
    consistency = (d_sum.square().sum(-1) - torch.as_tensor(d_sq, dtype=torch.float64)) / (M * (M - 1))
    return relevance.float().numpy(), consistency.float().numpy()


def check_channels(channels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n atlas rows measured both ways: evenly spread over the rows (every layer gets some)."""
    n = min(n, len(channels))
    return np.unique(np.linspace(0, len(channels) - 1, n).round().astype(np.int64)) if n else np.zeros(0, np.int64)


def run(
    generator,
    embedder,
    cfg: RelevanceConfig,
    out_dir,
    channels: np.ndarray,
    stats: dict,
    layers: list,
    chunks: list[int],
    show: bool,
) -> int:
    """Compute the given image blocks (and the exact check) that are missing; return the forward-equivalents."""
    blocks = chunk_ranges(cfg.num_images, cfg.chunk_images)
    todo = missing_chunks(out_dir, STAGE, num_chunks(cfg), among=chunks)
    if not todo:
        return 0
    sigma = stats["std"][flat_index(channels, layers)]  # [C]
    s_img = image_styles(generator, cfg)
    units = chunk_work(cfg, int(embedder.dim), len(channels))
    work = 0
    with bar(len(todo), "channel relevance (jacobian)", "chunk", show) as pbar:
        for i in todo:
            t0 = time.perf_counter()
            if i < len(blocks):
                a, b = blocks[i]
                cols = jacobian_columns(generator, embedder, [s[a:b] for s in s_img], channels, cfg)  # [K, C, D]
                d_sum, d_sq = direction_sums(cols, sigma, cfg.alpha)
                write_npz_atomic(
                    chunk_path(out_dir, STAGE, i),
                    d_sum=d_sum,
                    d_sq=d_sq,
                    images=np.arange(a, b),
                    seconds=np.float64(time.perf_counter() - t0),
                )
            else:
                _exact_check(generator, embedder, cfg, out_dir, channels, stats, layers, s_img, i)
            work += units[i]
            pbar.update(1)
    return work


def _exact_check(generator, embedder, cfg, out_dir, channels, stats, layers, s_img, i) -> None:
    """The check chunk: exact rows of the sampled channels on the same images and on a disjoint set."""
    t0 = time.perf_counter()
    rows = check_channels(channels, cfg.check_channels)
    layer_mean, layer_std = split_layers(stats["mean"], layers), split_layers(stats["std"], layers)
    same, same_c = exact.compute_chunk(generator, embedder, s_img, channels[rows], layer_mean, layer_std, cfg)
    other, _ = exact.compute_chunk(
        generator, embedder, image_styles(generator, cfg, 1), channels[rows], layer_mean, layer_std, cfg
    )
    write_npz_atomic(
        chunk_path(out_dir, STAGE, i),
        rows=rows,
        exact=same,
        exact_consistency=same_c,
        disjoint=other,
        seconds=np.float64(time.perf_counter() - t0),
    )


def finalize(out_dir, plan: dict) -> None:
    """Sum the image blocks into the exact path's channel-chunk files (and the check figures); no models needed."""
    r = plan["config"]["relevance"]
    if r.get("method", "exact") != "jacobian":
        return
    cfg = RelevanceConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in r.items()})
    n_out = int(plan["chunks"]["relevance"])
    if not missing_chunks(out_dir, exact.STAGE, n_out) and (work_dir(out_dir) / CHECK_FILE).exists():
        return
    n_in = num_chunks(cfg)
    missing = missing_chunks(out_dir, STAGE, n_in)
    if missing:
        from models.errors import AtlasError

        raise AtlasError(
            f"the jacobian relevance stage of {out_dir} has {n_in - len(missing)} of {n_in} chunks done "
            f"(missing {', '.join(map(str, missing[:8]))}); finish the build (or the shards owning "
            "those chunks) before merging."
        )
    channels = exact.atlas_channels(plan["layers"])
    blocks = chunk_ranges(cfg.num_images, cfg.chunk_images)
    d_sum, d_sq, seconds = 0.0, 0.0, 0.0
    for i in range(len(blocks)):  # always in block order: the same sums whoever computed which block
        part = read_npz(chunk_path(out_dir, STAGE, i))
        d_sum, d_sq, seconds = d_sum + part["d_sum"], d_sq + part["d_sq"], seconds + float(part["seconds"])
    relevance, consistency = reduce_sums(d_sum, d_sq, cfg.num_images)
    for i, (a, b) in enumerate(chunk_ranges(len(channels), cfg.chunk_channels)):
        write_npz_atomic(
            chunk_path(out_dir, exact.STAGE, i),
            relevance=relevance[a:b],
            consistency=consistency[a:b],
            channels=channels[a:b],
        )
    info = dict(method="jacobian", seconds=seconds, forward_equivalents_per_image=1 + 2 * int(relevance.shape[1]))
    if cfg.check_channels > 0:
        info.update(agreement(read_npz(chunk_path(out_dir, STAGE, n_in - 1)), relevance, consistency))
    write_json_atomic(work_dir(out_dir) / CHECK_FILE, info)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of matching rows [n, D] x [n, D] -> [n] (0 where a row is zero)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.where((na > 0) & (nb > 0), (a * b).sum(1) / np.maximum(na * nb, 1e-30), 0.0)


def agreement(check: dict, relevance: np.ndarray, consistency: np.ndarray) -> dict:
    """Jacobian vs exact rows on the same images, and exact vs exact on a disjoint set (the sampling floor)."""
    rows = check["rows"]
    fast = row_cosines(relevance[rows], check["exact"])
    floor = row_cosines(check["disjoint"], check["exact"])
    return dict(
        check_channels=len(rows),
        check_rows=[int(r) for r in rows],
        cosine_vs_exact_median=float(np.median(fast)),
        cosine_vs_exact_p10=float(np.percentile(fast, 10)),
        floor_cosine_median=float(np.median(floor)),
        floor_cosine_p10=float(np.percentile(floor, 10)),
        consistency_abs_diff_median=float(np.median(np.abs(consistency[rows] - check["exact_consistency"]))),
        check_seconds=float(check["seconds"]),
    )


def extra(out_dir, plan: dict) -> dict:
    """What the atlas records about its relevance method (`extra["relevance"]`)."""
    r = plan["config"]["relevance"]
    if r.get("method", "exact") != "jacobian":
        return dict(method="exact")
    path = work_dir(out_dir) / CHECK_FILE
    return json.loads(path.read_text("utf-8")) if path.exists() else dict(method="jacobian")


def probe(generator, embedder, cfg: RelevanceConfig) -> dict:
    """What one image costs the jacobian path on this device: saved graph bytes and one forward / backward time.

    One image runs forward with the graph kept, counting the bytes autograd saves (what a block of
    `chunk_images` images holds during its backward passes, per image) and the largest saved tensor (the
    batched backward holds gradients of about that size for each of its `vjp_batch` cotangents).
    """
    s_img = image_styles(generator, dataclasses.replace(cfg, num_images=2))
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    styles = [s[:1] for s in s_img]
    with _Frozen(generator, embedder), torch.enable_grad():
        leaves = [s.detach().clone().requires_grad_(True) for s in styles]
        t0 = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            e = torch.as_tensor(embedder.encode_image(generator.synthesize(leaves, noise_mode=cfg.noise_mode)))
        forward = time.perf_counter() - t0
        t0 = time.perf_counter()
        torch.autograd.grad(F.normalize(e.float(), dim=-1)[:, 0].sum(), leaves, allow_unused=True)
        backward = time.perf_counter() - t0
    return dict(
        graph_bytes_per_image=sum(saved),
        largest_saved_bytes=max(saved, default=0),
        probe_forward_seconds=forward,
        probe_backward_seconds=backward,
    )
