"""SPEC §3 channel relevance (StyleCLIP's Δi_c, `fs3`), batched over channels and images.

For a chunk of channels, every (channel, image, sign) is one row of a render batch: a copy of image k's
style codes with channel c set to mu_c +- alpha sigma_c (around the channel mean, not the image's value, as
the reference does). Rows are rendered and encoded `batch_size` at a time, then
d_k = normalise(e+ - e-), relevance = normalise(mean_k d_k), and the consistency of the d_k (their mean
pairwise cosine) in closed form: (|sum d|^2 - sum |d_k|^2) / (M (M - 1)), which is (|sum d|^2 - M)/(M(M-1))
when every d_k is a unit vector and counts a d_k of zero (the channel changed nothing) as cosine 0.
One deviation from the reference: |e+ - e-| < 1e-6 (float32 rounding of unit vectors) gives d_k = 0 rather than
a normalised rounding error, so a channel that changes nothing gets a zero row and consistency 0, not noise.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from index.io import write_npz_atomic
from index.work import chunk_path, missing_chunks
from models.errors import AtlasError
from models.stylespace import split_layers
from pipeline import synthesis
from pipeline.common import bar, chunk_ranges, chunk_seed, generator_device, truncated_w
from pipeline.config import RelevanceConfig

STAGE = "relevance"
DEAD_NORM = 1e-6  # |e+ - e-| below this (float32 noise on unit embeddings) counts as "changed nothing"


def layer_table(generator, cfg: RelevanceConfig) -> list[dict]:
    """One record per style layer: index, kind, resolution, width, w_index, in_atlas.

    Uses `generator.style_layers` when it has one; otherwise kind comes from rgb_layers and resolution /
    w_index from the StyleGAN2 layout when the layer count fits it, else -1 (unknown).
    """
    dims = [int(d) for d in generator.style_dims]
    rgb = {int(i) for i in getattr(generator, "rgb_layers", [])}
    known = getattr(generator, "style_layers", None)
    if known is not None and len(known) == len(dims):
        layers = [
            dict(
                index=i, kind=str(l["kind"]), resolution=int(l["resolution"]), width=dims[i], w_index=int(l["w_index"])
            )
            for i, l in enumerate(known)
        ]
    else:
        layout = _stylegan2_layout(len(dims), int(getattr(generator, "resolution", 0) or 0), rgb)
        layers = [
            dict(
                index=i,
                kind="torgb" if i in rgb else "conv",
                resolution=layout[i][0],
                width=dims[i],
                w_index=layout[i][1],
            )
            for i in range(len(dims))
        ]
    chosen = set(range(len(dims))) if cfg.layers is None else set(cfg.layers)
    bad = sorted(i for i in chosen if not 0 <= i < len(dims))
    if bad:
        raise AtlasError(f"layers {bad} do not exist; this generator has style layers 0..{len(dims) - 1}.")
    for l in layers:
        l["in_atlas"] = l["index"] in chosen and (l["kind"] == "conv" or cfg.include_torgb)
    if not any(l["in_atlas"] for l in layers):
        raise AtlasError(
            "no style layer is selected for the atlas; pick conv layers with --layers, or add "
            "--include-torgb to measure toRGB layers."
        )
    return layers


def _stylegan2_layout(n: int, resolution: int, rgb: set) -> list[tuple[int, int]]:
    """(resolution, w_index) per layer in StyleGAN2 StyleSpace order, or (-1, -1) if the count does not fit."""
    if resolution >= 4 and n == 3 * int(math.log2(resolution)) - 4 and rgb == set(range(1, n, 3)):
        out = [(4, 0), (4, 1)]
        for b, log_r in enumerate(range(3, int(math.log2(resolution)) + 1), start=1):
            out += [(2**log_r, 2 * b - 1), (2**log_r, 2 * b), (2**log_r, 2 * b + 1)]
        return out
    return [(-1, -1)] * n


def atlas_channels(layers: list[dict]) -> np.ndarray:
    """[C, 2] int64 (layer, channel) of every relevance row: layers in order, channels in order."""
    rows = [(l["index"], c) for l in layers if l["in_atlas"] for c in range(l["width"])]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


@torch.no_grad()
def image_styles(generator, cfg: RelevanceConfig) -> list[torch.Tensor]:
    """The M images' style codes (seeded psi-truncated samples): one [M, width_l] tensor per layer."""
    g = torch.Generator().manual_seed(chunk_seed(cfg.seed, "images", 0))
    z = torch.randn(cfg.num_images, int(generator.z_dim), generator=g)  # [M, z_dim]
    w = truncated_w(generator, z.to(generator_device(generator)), cfg.psi)  # [M, w_dim]
    return [torch.as_tensor(s).detach().reshape(cfg.num_images, -1) for s in generator.styles(w)]


@torch.no_grad()
def compute_chunk(
    generator,
    embedder,
    s_img: list,
    channels: np.ndarray,
    layer_mean: list,
    layer_std: list,
    cfg: RelevanceConfig,
    pbar=None,
) -> tuple[np.ndarray, np.ndarray]:
    """relevance [cc, D] float32 and consistency [cc] float32 for the channels [cc, 2] of one chunk."""
    M, cc = cfg.num_images, len(channels)
    lay, ch = torch.as_tensor(channels[:, 0]), torch.as_tensor(channels[:, 1])
    mu = np.array([layer_mean[l][c] for l, c in channels], np.float64)
    sigma = np.array([layer_std[l][c] for l, c in channels], np.float64)
    values = torch.as_tensor(np.stack([mu + cfg.alpha * sigma, mu - cfg.alpha * sigma], 1))  # [cc, 2] float64
    rows = 2 * M * cc  # row r: channel r // 2M, image (r // 2) % M, sign r % 2 (0: +, 1: -)
    embeddings = []
    cache = (
        synthesis.PrefixCache(generator, s_img, cfg.noise_mode)  # SPEC: layers before l are the image's
        if synthesis.supports(generator) and cfg.prefix_reuse and cfg.noise_mode != "random"
        else None
    )
    for start, stop in chunk_ranges(rows, cfg.batch_size):
        r = torch.arange(start, stop)
        ci, ki, sign = r // (2 * M), (r // 2) % M, r % 2
        styles = [s[ki.to(s.device)].clone() for s in s_img]  # per layer [B, width]
        for l in torch.unique(lay[ci]).tolist():
            sel = (lay[ci] == l).nonzero().squeeze(1)
            target = styles[l]
            target[sel.to(target.device), ch[ci[sel]].to(target.device)] = (
                values[ci[sel], sign[sel]].to(target.dtype).to(target.device)
            )
        with _autocast(styles[0].device, cfg.precision):
            e = _encode_rows(generator, embedder, styles, ki, lay[ci], cache, cfg)  # [B, D]
        e = F.normalize(e.float(), dim=-1)  # [B, D]
        embeddings.append(e.cpu())
        if pbar is not None:
            pbar.update(stop - start)
    relevance, consistency = reduce_directions(torch.cat(embeddings).view(cc, M, 2, -1))
    return relevance.float().numpy(), consistency.float().numpy()


def _encode_rows(generator, embedder, styles, ki, row_layer, cache, cfg: RelevanceConfig) -> torch.Tensor:
    """CLIP embeddings [B, D] of the rows: plain renders, or staged (prefix reuse, early exit) for StyleGAN2."""
    if not synthesis.supports(generator) or (cache is None and cfg.clip_resolution_exit is None):
        return torch.as_tensor(embedder.encode_image(generator.synthesize(styles, noise_mode=cfg.noise_mode)))
    res = torch.as_tensor(synthesis.layer_resolutions(generator))[row_layer]  # [B]
    exit_res = cfg.clip_resolution_exit
    early = res <= exit_res if exit_res is not None else torch.zeros_like(res, dtype=torch.bool)
    e = None
    for group, exit_at in ((early, exit_res), (~early, None)):
        idx = group.nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        part = [s[idx.to(s.device)] for s in styles]
        first = int(row_layer[idx].min()) if cache is not None else 0
        images = synthesis.render_rows(generator, cache, part, ki[idx], first, exit_at, cfg.noise_mode)
        out = torch.as_tensor(embedder.encode_image(images))  # [b, D]
        e = out.new_zeros(len(ki), out.shape[1]) if e is None else e
        e[idx.to(e.device)] = out
    return e


def reduce_directions(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings [cc, M, 2, D] of (s+, s-) per channel and image -> relevance [cc, D], consistency [cc] (float64)."""
    e = e.double()
    M = e.shape[1]
    diff = e[:, :, 0] - e[:, :, 1]  # [cc, M, D]
    # a difference below float32 resolution of unit vectors is rounding noise, not a direction: d_k = 0
    diff = torch.where(diff.norm(dim=-1, keepdim=True) < DEAD_NORM, torch.zeros_like(diff), diff)
    d = F.normalize(diff, dim=-1)  # [cc, M, D]
    d_sum = d.sum(1)  # [cc, D]
    relevance = F.normalize(d_sum / M, dim=-1)  # [cc, D]
    consistency = (d_sum.square().sum(-1) - d.square().sum((1, 2))) / (M * (M - 1))  # [cc]
    return relevance, consistency


def _autocast(device: torch.device, precision: str):
    """Mixed precision for render + encode (fp32: off, the reference's arithmetic)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def num_chunks(num_channels: int, cfg: RelevanceConfig) -> int:
    return len(chunk_ranges(num_channels, cfg.chunk_channels))


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
    """Compute the given relevance chunks that are missing; return the number of images rendered."""
    ranges = chunk_ranges(len(channels), cfg.chunk_channels)
    todo = missing_chunks(out_dir, STAGE, len(ranges), among=chunks)
    if not todo:
        return 0
    layer_mean, layer_std = split_layers(stats["mean"], layers), split_layers(stats["std"], layers)
    s_img = image_styles(generator, cfg)
    renders = 0
    total = sum(2 * cfg.num_images * (ranges[i][1] - ranges[i][0]) for i in todo)
    with bar(total, "channel relevance", "render", show) as pbar:
        for i in todo:
            a, b = ranges[i]
            rel, cons = compute_chunk(generator, embedder, s_img, channels[a:b], layer_mean, layer_std, cfg, pbar)
            write_npz_atomic(chunk_path(out_dir, STAGE, i), relevance=rel, consistency=cons, channels=channels[a:b])
            renders += 2 * cfg.num_images * (b - a)
    return renders
