"""Train the tiny demo StyleGAN2 to draw the shapes world from z; CPU, non-adversarial, resumable.

    python -m shapes.train_generator               # stages 1-4, writes out/demo_train/generator.pt (rosinality format)
    python -m shapes.train_generator --synthesis-steps 50 --mapping-steps 100 --joint-steps 20 \
        --out /tmp/g.pt --work-dir /tmp/g                # a quick trial

A fixed map sends every z to world attributes (`attributes_from_z`: colour = argmax z[0:6], shape = argmax
z[6:10], size and background = signs of z[10], z[11], brightness and position from normal CDFs of z[13:16];
z is pixel-normalised first, as the mapping network sees it). The world renderer draws the target; the
loss is a pixel loss (`pixel_loss`). Five stages (see `train`): synthesis + a linear attribute encoder,
then the mapping network regressing the encoder's w, then everything end to end from z with truncation
(joint, then refine), then, off unless --mixing-steps > 0, style mixing with attribute-aware targets
(`mixed_batch`): the coarse layers' w decides shape, size and position, the fine ones' colour and
background, with up to five segments (a sixth, the last toRGB layer alone, decides nothing), and optional
penalties, far channel pushes (a layer's pushes may be pinned to one channel), one channel trained as a shape
switch, per-sample loss weights and a loss on the pixels that tell shapes apart (`style_sparsity`, `rgb_spread`,
`perturb_styles`, `pinned_channels`, `switch_channel`, `switch_ends`, `hard_weighted`, `distinct_l1`; issue 17;
its runs are in models/demo/MODEL_CARD.md). The shipped generator is this trainer run in five phases:
`shapes.demo_recipe`.

    python -m shapes.train_generator --init models/demo/generator.pt --mixing-steps 2000 --mixing-splits 2,3,5,6 \
        --out out/g.pt --work-dir out/g              # stage 5 alone, from a trained generator
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.files import atomic_path
from models.stylegan2 import StyleGAN2Generator, load_generator, save_generator
from shapes import config_from_args, one_line_errors, style_stats, torch_threads, world

ARCHITECTURE = dict(resolution=32, style_dim=64, n_mlp=4, channels={4: 128, 8: 128, 16: 64, 32: 32})
Z_COLOUR, Z_SHAPE = slice(0, 6), slice(6, 10)
POSITION_RANGE = 0.5
BORDER_PX = 2  # pixel_loss's border_weight: ring width (the classifier reads the background off the outermost)
MEAN_W_EVERY = 100  # refine stage: recompute the truncation centre mean_w every this many steps
FINE_ATTRIBUTES = ("colour", "rgb", "background", "brightness")  # style mixing: what the fine layers' w decides
PLACE_ATTRIBUTES = ("size", "radius", "x", "y")
MIX_GROUPS = {  # per number of mixed z: the attributes each segment of w indices decides, coarse to fine
    2: (("shape", *PLACE_ATTRIBUTES), FINE_ATTRIBUTES),
    3: (PLACE_ATTRIBUTES, ("shape",), FINE_ATTRIBUTES),
    4: (PLACE_ATTRIBUTES, ("shape",), ("colour", "rgb"), ("background", "brightness")),
    5: (("x", "y"), ("size", "radius"), ("shape",), ("colour", "rgb"), ("background", "brightness")),
    # a sixth z that the target ignores: the last segment (split "7": the last toRGB layer alone) may decide
    # nothing. A toRGB layer is outside the conv channels the atlas and the strict probe push, and when it
    # tells the background too, a conv channel that sets the background alone draws a tinted, uneven border
    6: (("x", "y"), ("size", "radius"), ("shape",), ("colour", "rgb"), ("background", "brightness"), ()),
}
Z_SIZE, Z_BACKGROUND, Z_RADIUS, Z_BRIGHTNESS, Z_X, Z_Y = 10, 11, 12, 13, 14, 15
CLASS_RADIUS = np.array([sum(world.RADIUS_RANGE[i]) / 2 for i in (0, 1)], np.float32)  # px, the one per size class
DIRECTED_RADIUS_PX, DIRECTED_GREY = 0.5, 0.1  # group_target(directed=True): the least move a push must make
DIRECTED_SHAPE_IOU = 0.03  # the same for shape (with `before`): the least gain of another shape's fit over the own
PERTURB_TARGETS = ("clean", "group", "directed", "directed-shape")  # GeneratorTrainConfig.perturb_target
SWITCH_PROBE, SWITCH_LANDING = 32, 64  # switch_channel: samples read to choose the channel, and its two shapes


@dataclass(frozen=True)
class GeneratorTrainConfig:
    synthesis_steps: int = 6000  # stage 1: synthesis + attribute encoder, pixel loss
    mapping_steps: int = 20000  # stage 2: mapping network regresses the encoder's w (no rendering: fast)
    joint_steps: int = 3000  # stage 3: everything end to end from z, pixel loss
    refine_steps: int = 4000  # stage 4: end to end again at a lower lr, mean_w tracking the mapping
    mixing_steps: int = 0  # stage 5: style mixing, attribute-aware targets (mixed_batch); 0: off (as shipped)
    batch_size: int = 32
    mapping_batch_size: int = 512
    lr: float = 5e-3
    mapping_lr: float = 1.0  # on the stored mapping weights, which lr_mul 0.01 scales down 100x at run time
    joint_lr: float = 1e-3
    refine_lr: float = 1e-3
    mixing_lr: float = 1e-3
    mixing_share: float = 0.5  # stage 5: share of each batch drawn as a mix of two z
    mixing_splits: str = "5"  # stage 5: w indices where a mix switches z ("5": w5-w7 colour and background)
    affine_l1: float = 0.0  # stage 5: weight of the L1 penalty on the style affines (see affine_l1)
    style_sparsity: float = 0.0  # stage 5: weight of the per-layer sparsity of channel activity (style_sparsity)
    sparsity_layers: str = ""  # stage 5: the style layers style_sparsity counts ("3,8,9"; "": every conv layer)
    rgb_spread: float = 0.0  # stage 5: weight of the toRGB styles' spread (rgb_spread): colour through the convs
    perturb_share: float = 0.0  # stage 5: share of each batch with one conv channel pushed far (perturb_styles)
    perturb_sigmas: float = 5.0  # stage 5: the farthest push, in the channel's standard deviations
    perturb_draw: str = "uniform"  # stage 5: which channel a push takes: "uniform", or "sigma" (in proportion)
    # stage 5: a push's target: "clean" (clean_target), "group", "directed" or "directed-shape" (group_target)
    perturb_target: str = "clean"
    perturb_layers: str = ""  # stage 5: the conv style layers a push may take ("3,9"; "": every conv layer)
    # stage 5: conv layers ("5,6") whose best shape channel is trained as a switch (switch_channel); "": off
    switch_layers: str = ""
    switch_sigmas: float = 1.5  # stage 5: pushes of the switch channel this far or farther get its switched shape
    # stage 5: the switch's + and - shapes ("circle,cross"); "natural": the shapes whose samples sit highest and
    # lowest on the channel; "cycle" (+: the next of world.SHAPES after the row's own shape, -: the one before);
    # "": the shapes its pushes land on most
    switch_shapes: str = ""
    pin_channels: str = ""  # stage 5: "3:88,9:25": every push of layer 3 goes to channel 88, of layer 9 to 25
    init: str = ""  # a generator.pt to start stage 5 from when there is no checkpoint (skips stages 1-4)
    truncated_share: float = 0.5  # share of each batch drawn truncated (psi ~ U[psi_min, 1])
    psi_min: float = 0.5
    region_weight: float = 1.0  # weight of the per-sample shape-region L1 (see pixel_loss)
    hard_weight: float = 0.0  # stage 5: gamma of hard_weighted, the per-sample loss weighting (0: plain mean)
    focus_share: float = 0.0  # stage 5: share of each batch drawn as the (shape, size) drawn worst (worst_cell)
    misread_weight: float = 0.0  # stage 5: extra weight of samples whose shape the pixel classifier misreads
    # stage 5: weight of the L1 over the pixels that tell each target's shape from the shape most like it
    # at its area and centroid (distinct_l1): a small square's corners, a small cross's arm tips and notches
    distinct_weight: float = 0.0
    distinct_shapes: str = ""  # stage 5: the target shapes distinct_l1 counts ("circle,square,cross"; "": every shape)
    directed_centre: bool = False  # stage 5: a directed size target keeps the pushed image's centre (group_target)
    border_weight: float = 0.0  # stage 5: weight of the L1 on the image's outer rings (pixel_loss)
    curriculum: float = 0.4  # share of stage 1 over which colours, backgrounds and positions are phased in
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 100
    out: str = "out/demo_train/generator.pt"  # the shipped generator: shapes.demo_recipe (phases of this trainer)
    work_dir: str = "out/demo_train/generator"


def _phi(v: torch.Tensor) -> np.ndarray:
    """Standard normal CDF, as numpy float32."""
    return (0.5 * (1 + torch.erf(v / math.sqrt(2)))).numpy().astype(np.float32)


def attributes_from_z(z: torch.Tensor) -> dict[str, np.ndarray]:
    """The world attributes the demo generator is trained to draw for each z [n, 64] (exact named colours)."""
    zn = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)  # PixelNorm, as the mapping sees z
    size = (zn[:, Z_SIZE] > 0).long().numpy()
    background = (zn[:, Z_BACKGROUND] > 0).long().numpy()
    attrs = dict(
        colour=zn[:, Z_COLOUR].argmax(1).numpy(),
        shape=zn[:, Z_SHAPE].argmax(1).numpy(),
        size=size,
        background=background,
        x=_phi(zn[:, Z_X]),
        y=_phi(zn[:, Z_Y]),
    )
    for key, rng_key, idx, lo_hi in (
        ("radius", Z_RADIUS, size, world.RADIUS_RANGE),
        ("brightness", Z_BRIGHTNESS, background, world.BRIGHTNESS_RANGE),
    ):
        lo = np.array([lo_hi[0][0], lo_hi[1][0]], np.float32)[idx]
        hi = np.array([lo_hi[0][1], lo_hi[1][1]], np.float32)[idx]
        attrs[key] = lo + (hi - lo) * _phi(zn[:, rng_key])
    # a narrower slice of the world, learnable in minutes on a CPU (see MODEL_CARD.md): one radius per size
    # class and positions in the middle POSITION_RANGE of the reachable range
    attrs["radius"] = CLASS_RADIUS[size]
    for key in ("x", "y"):
        attrs[key] = (0.5 + POSITION_RANGE * (attrs[key] - 0.5)).astype(np.float32)
    attrs["rgb"] = world.COLOUR_RGB[attrs["colour"]]
    return attrs


CODE_DIM = len(world.COLOURS) + len(world.SHAPES) + 6


def attribute_code(attrs: dict) -> torch.Tensor:
    """[n, 16] code of the attributes: one-hot colour and shape, +-1 size and background, the continuous
    radius, brightness, x, y mapped to [-1, 1] within their ranges."""
    n = len(attrs["shape"])
    code = np.zeros((n, CODE_DIM), np.float32)
    code[np.arange(n), attrs["colour"]] = 1
    code[np.arange(n), len(world.COLOURS) + attrs["shape"]] = 1
    c = len(world.COLOURS) + len(world.SHAPES)
    code[:, c] = attrs["size"] * 2 - 1
    code[:, c + 1] = attrs["background"] * 2 - 1
    for j, (key, idx, lo_hi) in enumerate(
        (("radius", "size", world.RADIUS_RANGE), ("brightness", "background", world.BRIGHTNESS_RANGE))
    ):
        lo = np.array([lo_hi[0][0], lo_hi[1][0]], np.float32)[attrs[idx]]
        hi = np.array([lo_hi[0][1], lo_hi[1][1]], np.float32)[attrs[idx]]
        code[:, c + 2 + j] = 2 * (attrs[key] - lo) / (hi - lo) - 1
    code[:, c + 4] = attrs["x"] * 2 - 1
    code[:, c + 5] = attrs["y"] * 2 - 1
    return torch.from_numpy(code)


MEAN_CODE = torch.cat(
    [
        torch.full((len(world.COLOURS),), 1 / len(world.COLOURS)),
        torch.full((len(world.SHAPES),), 1 / len(world.SHAPES)),
        torch.zeros(6),
    ]
)


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def pixel_loss(
    fake: torch.Tensor,
    target: torch.Tensor,
    edge_weight: float = 4.0,
    region_weight: float = 0.0,
    per_sample: bool = False,
    border_weight: float = 0.0,
) -> torch.Tensor:
    """L1 (edge band weighted 1 + edge_weight) + MSE + L1 of image gradients + L1 at half resolution; the
    batch mean, or with per_sample each sample's own [B] (whose mean is the batch mean). border_weight: also
    the L1 averaged over the image's outer BORDER_PX rings, where convolution padding leaves tinted edges.

    Plain L1/MSE learned colour, size and position fast but left round blobs for every shape: the shape
    lives in the few pixels along the outline, so those (and the gradients there) weigh more."""
    err = fake - target
    tx, ty = _grad(target)
    edge = F.pad(tx.abs().amax(1, keepdim=True), (0, 1)) + F.pad(ty.abs().amax(1, keepdim=True), (0, 0, 0, 1))
    band = (F.max_pool2d(edge, 3, stride=1, padding=1) > 0.05).float()  # [B, 1, H, W] around outlines
    fx, fy = _grad(fake)

    def mean(x: torch.Tensor) -> torch.Tensor:  # [B, ...] -> [B], or the batch mean as computed before [B] was
        return x.flatten(1).mean(1) if per_sample else x.mean()

    loss = mean((1 + edge_weight * band) * err.abs()) + mean(err.square())
    loss = loss + mean((fx - tx).abs()) + mean((fy - ty).abs())
    loss = loss + mean((F.avg_pool2d(fake, 2) - F.avg_pool2d(target, 2)).abs())
    if region_weight:  # L1 averaged over each sample's own shape region: small shapes count as much as large
        shape = ((target - target[:, :, :1, :1]).abs().amax(1, keepdim=True) > 0.02).float()
        region = F.max_pool2d(shape, 5, stride=1, padding=2)  # [B, 1, H, W]
        each = (region * err.abs()).sum((1, 2, 3)) / (3 * region.sum((1, 2, 3)).clamp(min=1))  # [B]
        loss = loss + region_weight * (each if per_sample else each.mean())
    if border_weight:
        ring = torch.ones_like(err[:1, :1])
        ring[..., BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = 0
        loss = loss + border_weight * mean(ring * err.abs()) / ring.mean()
    return loss


def hard_weighted(losses: torch.Tensor, gamma: float, extra: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of per-sample losses [B], each weighted by (its loss / the batch mean) ** gamma times
    (1 + extra [B]), the weights normalised to average 1 (no gradient through them): the samples drawn worst
    count more. gamma 0 and no extra: the plain mean."""
    weights = torch.ones_like(losses)
    if gamma:
        weights = (losses.detach() / losses.detach().mean()).pow(gamma)
    if extra is not None:
        weights = weights * (1 + extra)
    return (losses * weights / weights.mean()).mean()


def misread(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B] 1.0 where the pixel classifier reads another shape in an image than in its target (world images,
    which it reads exactly), else 0: the loss barely sees a small cross drawn as a diamond (a few notch
    pixels), the classifier does."""
    from shapes.classifier import classify

    shapes = classify(torch.cat([images.detach(), targets]))["shape"]
    return torch.from_numpy((shapes[: len(images)] != shapes[len(images) :]).astype(np.float32))


def distinct_pixels(targets: torch.Tensor, shapes: str = "") -> torch.Tensor:
    """[B, 1, R, R] in [0, 1]: per target (world images, which the pixel classifier reads exactly), how far each
    pixel's coverage differs between the target's shape and the other shape most like it (the least coverage
    L1), each re-rendered at the target's area and centroid as the classifier fits them (classify's fits): a
    small square's corners against a circle's rim, a cross's arm tips and notches. Zero elsewhere, and for every
    target whose shape `shapes` ("circle,square,cross") leaves out."""
    from shapes.classifier import classify

    counted = shape_indices(shapes, "distinct_shapes") if shapes else list(range(len(world.SHAPES)))
    c = classify(targets, fits=True)
    n, own = len(targets), c["shape"]
    diff = np.abs(c["fits"] - c["fits"][np.arange(n), own][:, None])  # [B, 4, R, R]
    totals = diff.sum((2, 3))
    totals[np.arange(n), own] = np.inf
    out = diff[np.arange(n), totals.argmin(1)][:, None].astype(np.float32)
    out[~np.isin(own, counted)] = 0.0
    return torch.from_numpy(out)


def shape_indices(names: str, option: str) -> list[int]:
    """world.SHAPES indices of "circle,cross"; ValueError naming `option` for a name that is not a shape."""
    chosen = names.split(",")
    if not set(chosen) <= set(world.SHAPES):
        raise ValueError(f"{option} must name shapes among {world.SHAPES}, got {names!r}")
    return [world.SHAPES.index(name) for name in chosen]


def distinct_l1(fake: torch.Tensor, targets: torch.Tensor, shapes: str = "") -> torch.Tensor:
    """The L1 of fake against targets over each target's distinct_pixels (weighted by them, averaged per
    sample), averaged over the batch. The pixel loss barely sees a small square drawn as a circle (a few corner
    pixels among a thousand); this term is all such pixels. shapes: only targets of these shapes count (the
    others add zero, so each counted sample weighs what it would with every shape counted)."""
    weight = distinct_pixels(targets, shapes)
    each = (weight * (fake - targets).abs()).sum((1, 2, 3)) / (3 * weight.sum((1, 2, 3)).clamp(min=1e-6))
    return each.mean()


def synthesize(gen: StyleGAN2Generator, z: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """G(z) with per-sample truncation psi [n] (1 = none)."""
    w = gen.mapping(z)  # [n, w_dim]
    w = gen.mean_w + psi[:, None] * (w - gen.mean_w)
    return gen.synthesize(gen.styles(w), noise_mode="const")


def _batch(cfg: GeneratorTrainConfig, stage: int, step: int, n: int):
    """(z [n, 64], attrs, psi [n]) of one batch; the same whether the run was resumed or not."""
    rng = np.random.default_rng([cfg.seed, stage, step])
    z = torch.from_numpy(rng.standard_normal((n, ARCHITECTURE["style_dim"])).astype(np.float32))
    psi = np.where(rng.random(n) < cfg.truncated_share, rng.uniform(cfg.psi_min, 1.0, n), 1.0)
    return z, attributes_from_z(z), torch.from_numpy(psi.astype(np.float32))


def mixing_splits(cfg: GeneratorTrainConfig) -> list[int]:
    """The w indices at which a style mix switches to the next z (cfg.mixing_splits, e.g. "5" or "3,5"; with
    five, the last segment decides nothing: MIX_GROUPS[6])."""
    splits = [int(v) for v in cfg.mixing_splits.split(",")]
    if not 1 <= len(splits) <= 5 or splits != sorted(set(splits)) or not 0 < splits[0] <= splits[-1] < 8:
        raise ValueError(f"mixing_splits must be 1 to 5 increasing w indices in 1..7, got {cfg.mixing_splits!r}")
    return splits


def mixed_batch(
    gen: StyleGAN2Generator,
    cfg: GeneratorTrainConfig,
    stage: int,
    step: int,
    with_attrs: bool = False,
    focus: tuple[int, int] | None = None,
):
    """(ws [n, num_ws, w_dim], target images) of one style-mixing batch: in a mixing_share of the samples,
    each segment of w indices between mixing_splits takes the w of its own z, and the target takes from each z
    the attributes of its segment (MIX_GROUPS; the world renderer draws the mix); the rest are plain samples.

    Attribute-aware targets make the coarse layers the only ones that can say where and how large the shape
    is (and what it is), and the fine ones (32 px) the only ones that can colour it and its background.
    with_attrs: also return the attributes the target draws. focus (shape, size): a cfg.focus_share of the
    samples get that shape and size (focus_z), whichever z of a mix decides them."""
    n, splits = cfg.batch_size, mixing_splits(cfg)
    k = len(splits) + 1
    rng = np.random.default_rng([cfg.seed, stage, step])
    z = torch.from_numpy(rng.standard_normal((k, n, ARCHITECTURE["style_dim"])).astype(np.float32))
    psi = np.where(rng.random(n) < cfg.truncated_share, rng.uniform(cfg.psi_min, 1.0, n), 1.0)
    mixed = rng.random(n) < cfg.mixing_share  # [n] bool
    if focus is not None:  # its own generator: batches without a focus stay what they were
        rows = np.random.default_rng([cfg.seed, stage, step, 11]).random(n) < cfg.focus_share
        z[:, torch.from_numpy(rows)] = focus_z(z[:, torch.from_numpy(rows)], *focus)
    attrs = mix_attributes([attributes_from_z(zj) for zj in z], mixed)
    psi = torch.from_numpy(psi.astype(np.float32))[:, None]  # [n, 1]
    w = gen.mean_w + psi * (gen.mapping(z.reshape(k * n, -1)).reshape(k, n, -1) - gen.mean_w)  # [k, n, w_dim]
    source = torch.zeros(n, gen.num_ws, dtype=torch.long)  # which z each sample's w index takes
    for split in splits:
        source[torch.from_numpy(mixed), split:] += 1
    ws = w.permute(1, 0, 2).gather(1, source[..., None].expand(-1, -1, w.shape[-1]))  # [n, num_ws, w_dim]
    return (ws, world.render(attrs), attrs) if with_attrs else (ws, world.render(attrs))


def focus_z(z: torch.Tensor, shape: int, size: int) -> torch.Tensor:
    """z [..., 64] changed as little as needed for attributes_from_z to read `shape` and `size` (0 small, 1
    large): the shape's coordinate raised just above the largest of z[6:10], the size coordinate's sign set.
    PixelNorm scales every coordinate alike, so argmax and signs survive it."""
    z = z.clone()
    block = z[..., Z_SHAPE]
    z[..., Z_SHAPE.start + shape] = block.amax(-1) + 0.1
    z[..., Z_SIZE] = z[..., Z_SIZE].abs().clamp(min=0.1) * (1 if size else -1)
    return z


@torch.no_grad()
def worst_cell(gen: StyleGAN2Generator, n: int = 512, seed: int = 0, psi: float = 0.7) -> tuple[int, int]:
    """The (shape, size) that the generator draws worst: the lowest share of n seeded psi-truncated samples
    of that cell whose shape the pixel classifier reads as the one z asks for (a cell too rare to judge is
    skipped)."""
    from shapes.classifier import classify

    z = torch.randn(n, gen.z_dim, generator=torch.Generator().manual_seed(seed + 17))
    attrs = attributes_from_z(z)
    read = classify(gen.synthesize(gen.styles(gen.truncate(gen.mapping(z), psi))))["shape"]
    scores = {}
    for shape in range(len(world.SHAPES)):
        for size in (0, 1):
            cell = (attrs["shape"] == shape) & (attrs["size"] == size)
            if cell.sum() >= 8:
                scores[(shape, size)] = float((read[cell] == shape).mean())
    return min(scores, key=scores.get)


def mix_attributes(sources: list[dict], mixed: np.ndarray) -> dict:
    """The attributes of a style mix of len(sources) z: where mixed [n] is True, each attribute comes from
    the z of its segment (MIX_GROUPS[len(sources)]); elsewhere everything from the first."""
    out = dict(sources[0])
    for keys, source in zip(MIX_GROUPS[len(sources)][1:], sources[1:]):
        for key in keys:
            out[key] = np.where(mixed.reshape((-1,) + (1,) * (source[key].ndim - 1)), source[key], out[key])
    return out


def affine_l1(gen: StyleGAN2Generator) -> torch.Tensor:
    """Mean |weight| of the style affines (w -> s, as applied): small when each channel reads few w directions."""
    weights = [a.weight * a.scale for a in gen.style_affines()]
    return torch.cat([wt.abs().flatten() for wt in weights]).mean()


def style_sparsity(gen: StyleGAN2Generator, styles: list[torch.Tensor], layers: str = "") -> torch.Tensor:
    """Mean over the conv layers (or the style layers listed in `layers`, "3,8,9") of L1 / (L2 sqrt(C)) of the
    per-channel std of the styles over the batch: in (0, 1], smallest when few channels of a layer vary.
    Scale-free, as demodulation is: a penalty on the plain L1 could be met by shrinking every style of a
    layer together, which the convolution does not see."""
    keep = [int(v) for v in layers.split(",")] if layers else None
    out = []
    for i, s in enumerate(styles):
        if i in gen.rgb_layers if keep is None else i not in keep:
            continue
        spread = s.std(0)  # [C]
        out.append(spread.sum() / (spread.norm() * math.sqrt(len(spread)) + 1e-8))
    return torch.stack(out).mean()


def rgb_spread(gen: StyleGAN2Generator, styles: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the toRGB layers of mean std / mean |style| over the batch: 0 when those styles are the same for
    every sample. A toRGB layer scales its features without demodulation, the easiest place for a network to
    set a colour or a brightness, but StyleSpace's conv channels (the atlas's) do not include it."""
    return torch.stack([styles[i].std(0).mean() / (styles[i].abs().mean() + 1e-8) for i in gen.rgb_layers]).mean()


def named_conv_layers(gen, count: int, layers: str, option: str) -> list[int]:
    """The style-layer indices `layers` names ("3,9"), each one of the generator's `count` style layers that is
    not a toRGB layer; ValueError naming `option` otherwise."""
    conv = [i for i in range(count) if i not in gen.rgb_layers]
    chosen = [int(v) for v in layers.split(",")]
    if not chosen or any(i not in conv for i in chosen):
        raise ValueError(f"{option} must name conv style layers among {conv}, got {layers!r}")
    return chosen


def perturb_styles(
    gen,
    styles,
    stats,
    rows: np.ndarray,
    rng: np.random.Generator,
    sigmas: float,
    draw: str = "uniform",
    layers: str = "",
    switch: dict | None = None,
    pinned: dict | None = None,
) -> tuple[list, list[int]]:
    """(the styles with, in each of `rows`, one conv channel set to mu +- k sigma, k ~ U(1, sigmas), and the
    style layer pushed in each row): a random conv layer (one of `layers`, "3,9", if given), and in it a
    channel drawn uniformly, or with draw="sigma" in proportion to its sigma (the channels that carry the most
    are the ones a +-5 sigma probe pushes farthest out of what training saw); in switch["layer"] (switch_channel),
    always switch["channel"]; in a layer of `pinned` ({layer: channel}, pin_channels), always that channel."""
    if draw not in ("uniform", "sigma"):
        raise ValueError(f"perturb_draw must be uniform or sigma, got {draw!r}")
    if layers:
        conv = named_conv_layers(gen, len(styles), layers, "perturb_layers")
    else:
        conv = [i for i in range(len(styles)) if i not in gen.rgb_layers]
    for layer, channel in (pinned or {}).items():
        if layer not in conv or not 0 <= channel < styles[layer].shape[1]:
            raise ValueError(f"pin_channels: ({layer}, {channel}) is not a channel of the pushed conv layers {conv}")
    out, layers = list(styles), []
    for row in rows:
        layer = conv[rng.integers(len(conv))]
        layers.append(layer)
        if switch is not None and layer == switch["layer"]:
            channel = switch["channel"]
        elif pinned and layer in pinned:
            channel = pinned[layer]
        elif draw == "uniform":
            channel = int(rng.integers(styles[layer].shape[1]))
        else:
            weights = stats[1][layer].double().clamp(min=0).numpy()
            channel = int(rng.choice(len(weights), p=weights / weights.sum()))
        if out[layer] is styles[layer]:
            out[layer] = styles[layer].clone()
        mu, sigma = stats[0][layer][channel], stats[1][layer][channel]
        out[layer][row, channel] = mu + rng.choice((-1.0, 1.0)) * rng.uniform(1.0, sigmas) * sigma
    return out, layers


def pinned_channels(spec: str) -> dict[int, int]:
    """{layer: channel} from "3:88,9:25" (pin_channels)."""
    try:
        pairs = [tuple(int(v) for v in item.split(":")) for item in spec.split(",")] if spec else []
        pinned = {layer: channel for layer, channel in pairs}
    except ValueError:
        raise ValueError(f"pin_channels must look like '3:88,9:25', got {spec!r}") from None
    if len(pinned) != len(pairs):
        raise ValueError(f"pin_channels names a layer twice: {spec!r}")
    return pinned


def clean_target(images: torch.Tensor) -> torch.Tensor:
    """The world image nearest to what each image shows, per the pixel classifier: its shape at its size and
    place, in its nearest named colour, on its background's grey clipped into the dark or light range. The
    target of a pushed channel: whatever a far edit shows, it should still be one clean shape."""
    return world.render(clean_attributes(images))


def group_target(
    gen,
    splits: list[int],
    attrs: dict,
    rows: np.ndarray,
    layers: list[int],
    images,
    directed: bool = False,
    before=None,
    centre: bool = False,
) -> torch.Tensor:
    """Targets [len(rows), 3, R, R] for pushed rows: the row's own attributes (attrs, as its target drew them),
    except the group that the pushed layer's w segment decides in style mixing (MIX_GROUPS), which comes from
    what the image shows (clean_attributes). A far push in a colour layer may recolour the shape but not move
    or reshape it; in a coarse layer it may reshape or move it but not recolour it.

    directed (perturb_target "directed"): size and background are not read but completed. A push that moved the
    radius by more than DIRECTED_RADIUS_PX gets the size class it moved toward, at the generator's radius for
    it; one that moved the background grey by more than DIRECTED_GREY gets the background class it moved toward
    (the grey the image shows, clipped into that class's range); a smaller move keeps the row's own. A target
    read from the pushed image accepts whatever the push drew, and pushes of one channel toward such targets
    teach the network to ignore that channel (MODEL_CARD.md, fifth round).

    before (directed, perturb_target "directed-shape"): the same rows' images without the push. Then shape is
    completed too: a push whose image fits another shape better, relative to the row's own shape, by more than
    DIRECTED_SHAPE_IOU than the image before the push did (classifier shape_ious) gets that shape (of the
    others, the one the pushed image fits best); a smaller gain keeps the row's own.

    centre (directed_centre): a completed size keeps the shape's centre where the pushed image shows it. x and y
    place a shape within the positions its size can take (world.centres), so the row's own x and y at the new
    radius would move it by up to (large - small half-extent) px toward the middle or the border."""
    from shapes.classifier import classify

    after = classify(images)
    read = clean_attributes(images, after)
    if before is not None:
        gain = after["shape_ious"] - classify(before)["shape_ious"]  # [len(rows), 4]
    groups = MIX_GROUPS[len(splits) + 1]
    out = {k: np.array(v[rows]) for k, v in attrs.items()}
    w_index = [record["w_index"] for record in gen.style_layers]
    for i, layer in enumerate(layers):
        keys = groups[sum(w_index[layer] >= cut for cut in splits)]
        if directed:
            moved = read["radius"][i] - out["radius"][i]
            if "radius" in keys and abs(moved) > DIRECTED_RADIUS_PX:
                out["size"][i], out["radius"][i] = int(moved > 0), CLASS_RADIUS[int(moved > 0)]
                if centre:
                    out["x"][i], out["y"][i] = world.positions(
                        out["shape"][i], after["cx"][i], after["cy"][i], out["radius"][i]
                    )
            moved = read["brightness"][i] - out["brightness"][i]
            if "brightness" in keys and abs(moved) > DIRECTED_GREY:
                out["background"][i] = int(moved > 0)
                out["brightness"][i] = np.float32(
                    np.clip(read["brightness"][i], *world.BRIGHTNESS_RANGE[int(moved > 0)])
                )
            if "shape" in keys and before is not None:
                own, fits = int(out["shape"][i]), after["shape_ious"][i].copy()
                fits[own] = -np.inf
                other = int(fits.argmax())  # the other shape the pushed image fits best
                if gain[i, other] - gain[i, own] > DIRECTED_SHAPE_IOU:
                    out["shape"][i] = other
            completed = ("size", "radius", "background", "brightness", *(("shape",) if before is not None else ()))
            keys = [k for k in keys if k not in completed]
        for key in keys:
            out[key][i] = read[key][i]
    return world.render(out)


@torch.no_grad()
def unpushed(gen, styles: list, rows: np.ndarray) -> torch.Tensor:
    """The images of `rows` from their styles before perturb_styles pushed them (group_target's `before`)."""
    return gen.synthesize([s[rows] for s in styles], noise_mode="const")


@torch.no_grad()
def switch_channel(gen, stats, layers: str, seed: int = 0, shapes: str = "") -> dict:
    """The channel stage 5 trains as a shape switch (switch_layers), and the shapes its two ends are to draw.

    The channel: of the conv channels of `layers`, the one whose +-5 sigma push flips the shape in the most
    samples beyond its largest side effect, both images valid in at least half (shapes.probe.channel_effects
    on SWITCH_PROBE samples of seed + 1, not the strict probe's seed 0). Its + shape: the shape its +5 sigma
    push (stats: the trainer's style statistics) lands on most often in SWITCH_LANDING samples, counting the
    pushes that change a valid image's shape; its - shape: likewise for -5 sigma, of the other shapes (when no
    - push changes a shape, that count says nothing: the first other shape). shapes: "circle,cross", the two
    ends' shapes given; "natural", the shapes whose valid samples (the same 64, unpushed) have the channel's
    highest and lowest mean; "cycle" (switch_target).
    -> dict(layer, channel, plus, minus) (shape indices into world.SHAPES; -1 and -1 for a cycle)."""
    from shapes.classifier import classify
    from shapes.probe import channel_effects

    chosen = named_conv_layers(gen, len(stats[0]), layers, "switch_layers")
    ends = switch_ends(shapes) if shapes != "natural" else None
    pairs = [(layer, c) for layer in chosen for c in range(len(stats[0][layer]))]
    records = [r for r in channel_effects(gen, n=SWITCH_PROBE, seed=seed + 1, channels=pairs) if r["valid"] >= 0.5]
    if not records:
        raise ValueError(f"no channel of layers {layers} gives two valid images in half of {SWITCH_PROBE} samples")
    best = max(records, key=lambda r: r["rates"]["shape"] - max(v for a, v in r["rates"].items() if a != "shape"))
    layer, channel = best["layer"], best["channel"]
    if ends is not None:
        return dict(layer=int(layer), channel=int(channel), plus=ends[0], minus=ends[1])
    z = torch.randn(SWITCH_LANDING, gen.z_dim, generator=torch.Generator().manual_seed(seed + 101))
    base = gen.styles(gen.truncate(gen.mapping(z), 0.7))
    reading = classify(gen.synthesize(base, noise_mode="const"))
    own = reading["shape"]
    if shapes == "natural":  # the shapes whose valid samples sit highest and lowest on the channel
        value = base[layer][:, channel].numpy()
        means = [value[reading["valid"] & (own == k)] for k in range(len(world.SHAPES))]
        if any(len(m) < 2 for m in means):
            raise ValueError(f"switch_shapes natural: fewer than 2 valid samples of a shape in {SWITCH_LANDING}")
        means = np.array([m.mean() for m in means])
        return dict(layer=int(layer), channel=int(channel), plus=int(means.argmax()), minus=int(means.argmin()))
    landed = []
    for sign in (1.0, -1.0):
        styles = [s.clone() for s in base]
        styles[layer][:, channel] = stats[0][layer][channel] + sign * 5.0 * stats[1][layer][channel]
        read = classify(gen.synthesize(styles, noise_mode="const"))
        moved = (read["shape"] != own) & read["valid"]
        landed.append(np.bincount(read["shape"][moved], minlength=len(world.SHAPES)).astype(np.float64))
    plus = int(landed[0].argmax())
    landed[1][plus] = -1.0  # the two ends draw two different shapes
    return dict(layer=int(layer), channel=int(channel), plus=plus, minus=int(landed[1].argmax()))


def switch_ends(shapes: str) -> tuple[int, int] | None:
    """The switch's (+, -) shape indices from "circle,cross" (switch_shapes); (-1, -1) for "cycle"; None for ""."""
    if not shapes:
        return None
    if shapes == "cycle":
        return -1, -1
    names = shapes.split(",")
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"switch_shapes must be two different shapes of {world.SHAPES}, got {shapes!r}")
    plus, minus = shape_indices(shapes, "switch_shapes")
    return plus, minus


def switch_target(
    target: torch.Tensor,
    attrs: dict,
    rows: np.ndarray,
    layers: list[int],
    styles: list,
    stats,
    switch: dict,
    min_sigma: float,
) -> torch.Tensor:
    """target [len(rows), 3, R, R] (the pushed rows' targets; layers: the layer pushed in each, perturb_styles),
    with every row whose switch channel (switch_channel) was pushed min_sigma or farther from its mean redrawn
    as the row's own attributes in the shape of that end (switch["plus"] or switch["minus"]), whatever the
    row's own shape; in a cycle (both -1, switch_shapes "cycle"), the shape after the row's own for a + push,
    the one before for a - push."""
    layer, channel = switch["layer"], switch["channel"]
    k = ((styles[layer][rows, channel] - stats[0][layer][channel]) / stats[1][layer][channel]).detach().numpy()
    far = np.flatnonzero((np.asarray(layers) == layer) & (np.abs(k) >= min_sigma))
    if not len(far):
        return target
    own = {key: np.array(v[rows[far]]) for key, v in attrs.items()}
    if switch["plus"] < 0:  # a cycle: the shape after the row's own for +, the one before for -
        own["shape"] = (own["shape"] + np.where(k[far] > 0, 1, -1)) % len(world.SHAPES)
    else:
        own["shape"] = np.where(k[far] > 0, switch["plus"], switch["minus"])
    out = target.clone()
    out[far] = world.render(own)
    return out


def clean_attributes(images: torch.Tensor, reading: dict | None = None) -> dict:
    """The attributes of clean_target: the classifier's reading (`reading`, if already made), snapped into the
    world's ranges."""
    from shapes.classifier import classify

    c = classify(images) if reading is None else reading
    light = c["background"].astype(bool)
    dark_lo, dark_hi = world.BRIGHTNESS_RANGE[0]
    light_lo, light_hi = world.BRIGHTNESS_RANGE[1]
    grey = np.where(light, c["grey"].clip(light_lo, light_hi), c["grey"].clip(dark_lo, dark_hi))
    return dict(
        shape=c["shape"],
        colour=c["colour"],
        rgb=world.COLOUR_RGB[c["colour"]],
        size=c["size"],
        radius=c["radius"].clip(world.RADIUS_RANGE[0][0], world.RADIUS_RANGE[1][1]).astype(np.float32),
        background=c["background"],
        brightness=grey.astype(np.float32),
        x=c["x"].astype(np.float32),
        y=c["y"].astype(np.float32),
    )


def mapping_loss(
    w: torch.Tensor,
    attrs: dict,
    encoder: torch.nn.Linear,
    w_var: torch.Tensor,
    margin_weight: float = 0.1,
    sharpness: float = 5.0,
) -> torch.Tensor:
    """Variance-normalised MSE to E(code) plus classification terms on the code read back from w.

    MSE alone learns the argmax boundaries of the map slowly (blended colours near them); cross-entropy on
    the decoded one-hot parts and a soft margin on the decoded signs sharpen them."""
    with torch.no_grad():
        w_target = encoder(attribute_code(attrs))  # [B, w_dim]
        decoder = torch.linalg.pinv(encoder.weight)  # [CODE_DIM, w_dim]
    code = (w - encoder.bias) @ decoder.T  # [B, CODE_DIM]
    n_col, n_shape = len(world.COLOURS), len(world.SHAPES)
    c = n_col + n_shape
    ce = F.cross_entropy(sharpness * code[:, :n_col], torch.from_numpy(attrs["colour"])) + F.cross_entropy(
        sharpness * code[:, n_col:c], torch.from_numpy(attrs["shape"])
    )
    signs = torch.from_numpy(np.stack([attrs["size"], attrs["background"]], 1) * 2 - 1).float()  # [B, 2]
    margin = F.softplus(-sharpness * code[:, c : c + 2] * signs).mean()
    return ((w - w_target).square() / w_var).mean() + margin_weight * (ce + margin)


def _curriculum(attrs: dict, release: float, step: int, seed: int) -> None:
    """Stage 1 starts with red shapes on a dark background at the centre and releases colour, background
    and position as `release` goes 0 -> 1; with everything varying from the start, 1,400 steps still drew
    round blobs for every shape (the shape lives in few outline pixels; colour and place dominate the loss)."""
    rng = np.random.default_rng([seed, 99, step])
    fixed = rng.random(len(attrs["shape"])) >= release
    attrs["colour"][fixed], attrs["background"][fixed], attrs["brightness"][fixed] = 0, 0, 0.15
    attrs["rgb"] = world.COLOUR_RGB[attrs["colour"]]
    for key in ("x", "y"):
        attrs[key] = (0.5 + release * (attrs[key] - 0.5)).astype(np.float32)


def _lr(base: float, step: int, steps: int, warmup: int = 50) -> float:
    return base * min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * step / steps))


def _save(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _stage5_state(stats, focus, switch) -> dict:
    """What stage 5 computed at its last refresh and a resumed run must reuse to continue bit for bit."""
    out = {}
    if stats is not None:
        out["stats"] = [list(stats[0]), list(stats[1])]
    if focus is not None:
        out["focus"] = [int(v) for v in focus]
    if switch is not None:
        out["switch"] = switch
    return out


def train(cfg: GeneratorTrainConfig) -> StyleGAN2Generator:
    """Trains with cfg.threads torch threads and gives the caller's thread count back afterwards."""
    with torch_threads(cfg.threads):
        return _train(cfg)


def _train(cfg: GeneratorTrainConfig) -> StyleGAN2Generator:
    """Stage 1: w = E(code(attrs)) with E linear; synthesis + E learn to draw the world (codes shrunk towards
    the mean code by psi, so truncation in W, which E makes exactly a shrink of the code, keeps the picture).
    Stage 2: the mapping network learns z -> E(code(attrs(z))). Stage 3: end to end from z, as sampled.
    Stage 4: stage 3 again, warm restart, truncation centre tracking the mapping. Stage 5: as 4 with half of
    each batch style-mixed (`mixed_batch`); with cfg.init and no checkpoint, stage 5 alone from that generator."""
    if cfg.perturb_target not in PERTURB_TARGETS:
        raise ValueError(f"perturb_target must be clean, group, directed or directed-shape, got {cfg.perturb_target!r}")
    if cfg.switch_layers and not (
        cfg.perturb_share and set(cfg.switch_layers.split(",")) <= set(cfg.perturb_layers.split(","))
    ):
        raise ValueError(
            f"switch_layers ({cfg.switch_layers!r}) must be pushed layers: set perturb_share and a perturb_layers "
            f"that names them (got {cfg.perturb_layers!r})"
        )
    pinned = pinned_channels(cfg.pin_channels)
    pin_layers = {str(layer) for layer in pinned}
    if pinned and not cfg.perturb_share:
        raise ValueError("pin_channels needs perturb_share: the pushes it pins")
    if pinned and cfg.perturb_layers and not pin_layers <= set(cfg.perturb_layers.split(",")):
        # perturb_styles checks this too, but only when stage 5 begins: after stages 1-4 in a run from scratch
        raise ValueError(
            f"pin_channels ({cfg.pin_channels!r}) must pin pushed layers (perturb_layers {cfg.perturb_layers!r})"
        )
    if cfg.switch_layers and pin_layers & set(cfg.switch_layers.split(",")):
        raise ValueError(f"pin_channels ({cfg.pin_channels!r}) may not pin a switch layer ({cfg.switch_layers!r})")
    if cfg.switch_shapes != "natural":
        switch_ends(cfg.switch_shapes)  # a bad value fails here, before any training
    if cfg.distinct_shapes:
        shape_indices(cfg.distinct_shapes, "distinct_shapes")
    if cfg.switch_shapes and not cfg.switch_layers:
        raise ValueError("switch_shapes needs switch_layers: the layers whose channel is trained as the switch")
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    gen = StyleGAN2Generator(**ARCHITECTURE, seed=cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = torch.nn.Linear(CODE_DIM, gen.w_dim)  # E: attribute code -> w
    synthesis = [p for n, p in gen.named_parameters() if not n.startswith("style.")]
    mapping = [p for n, p in gen.named_parameters() if n.startswith("style.")]
    stages = [
        ("synthesis", cfg.synthesis_steps),
        ("mapping", cfg.mapping_steps),
        ("joint", cfg.joint_steps),
        ("refine", cfg.refine_steps),
        ("mixing", cfg.mixing_steps),
    ]
    stage, step, opt_state = 0, 0, None
    stats = None  # stage 5's style statistics for perturb_styles, refreshed with mean_w
    focus = None  # stage 5's (shape, size) drawn worst, for focus_share, refreshed with mean_w
    switch = None  # stage 5's switch channel (switch_channel), chosen once when the stage begins
    ckpt_path = work / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        gen.load_state_dict(ckpt["gen"])
        encoder.load_state_dict(ckpt["encoder"])
        stage, step, opt_state = int(ckpt["stage"]), int(ckpt["step"]), ckpt["opt"]
        if "stats" in ckpt:  # stage 5's state as it was at that step, not recomputed from the resumed weights
            stats = tuple(ckpt["stats"])
        focus = tuple(ckpt["focus"]) if "focus" in ckpt else None
        switch = ckpt.get("switch")
        if "mean_w" in ckpt:  # the truncation centre in use when the checkpoint was written
            gen.mean_w.copy_(ckpt["mean_w"])
        print(f"resumed at stage {stages[stage][0] if stage < len(stages) else 'done'} step {step}", flush=True)
    elif cfg.init:  # stage 5 alone, from a generator that stages 1-4 wrote (the encoder is not needed any more)
        start = load_generator(cfg.init)
        gen.load_state_dict(start.state_dict())
        gen.mean_w.copy_(start.mean_w)
        stage = len(stages) - 1
        print(f"stage {stages[stage][0]} from {cfg.init}", flush=True)
    t0, cpu0 = time.time(), time.process_time()
    while stage < len(stages):
        name, steps = stages[stage]
        # the mapping's stored weights need a larger lr than the synthesis (lr_mul 0.01), also when joint
        groups = dict(
            synthesis=[(synthesis + list(encoder.parameters()), cfg.lr)],
            mapping=[(mapping, cfg.mapping_lr)],
            joint=[(synthesis, cfg.joint_lr), (mapping, cfg.joint_lr * cfg.mapping_lr / cfg.lr)],
            refine=[(synthesis, cfg.refine_lr), (mapping, cfg.refine_lr * cfg.mapping_lr / cfg.lr)],
            mixing=[(synthesis, cfg.mixing_lr), (mapping, cfg.mixing_lr * cfg.mapping_lr / cfg.lr)],
        )[name]
        opt = torch.optim.Adam([dict(params=p, lr=lr, base=lr) for p, lr in groups], betas=(0.9, 0.99))
        if opt_state is not None:
            opt.load_state_dict(opt_state)
            opt_state = None
        if name in ("joint", "refine", "mixing") and (step == 0 or not gen.mean_w.any()):
            gen.update_mean_w(n=10_000, seed=cfg.seed)  # the truncation centre for psi < 1 samples
        if name == "mapping":
            with torch.no_grad():  # per-dimension variance of the targets, to weigh every w dimension alike
                w_var = encoder(attribute_code(_batch(cfg, stage, 10**9, 10_000)[1])).var(0)  # [w_dim]
        for step in range(step, steps):
            for group in opt.param_groups:
                group["lr"] = _lr(group["base"], step, steps)
            if name == "mapping":
                z, attrs, _ = _batch(cfg, stage, step, cfg.mapping_batch_size)
                loss = mapping_loss(gen.mapping(z), attrs, encoder, w_var)
            elif name == "synthesis":
                z, attrs, psi = _batch(cfg, stage, step, cfg.batch_size)
                _curriculum(attrs, min(1.0, step / max(1.0, cfg.curriculum * steps)), step, cfg.seed)
                code = MEAN_CODE + psi[:, None] * (attribute_code(attrs) - MEAN_CODE)  # [B, 16]
                fake = gen.synthesize(gen.styles(encoder(code)), noise_mode="const")
                loss = pixel_loss(fake, world.render(attrs), region_weight=cfg.region_weight)
            elif name == "mixing":  # end to end, half the batch mixed; the truncation centre follows the mapping
                if step % MEAN_W_EVERY == 0 and step:
                    gen.update_mean_w(n=10_000, seed=cfg.seed)
                if cfg.focus_share and (step % MEAN_W_EVERY == 0 or focus is None):  # a resumed run: the saved one
                    focus = worst_cell(gen, seed=cfg.seed)
                    print(
                        f"mixing {step}: focus on {world.SIZES[focus[1]]} {world.SHAPES[focus[0]]} samples", flush=True
                    )
                ws, target, attrs = mixed_batch(gen, cfg, stage, step, with_attrs=True, focus=focus)
                styles = gen.styles(ws)
                if cfg.perturb_share:
                    if step % MEAN_W_EVERY == 0 or stats is None:
                        stats = style_stats(gen, seed=cfg.seed)
                    if cfg.switch_layers and switch is None:
                        switch = switch_channel(gen, stats, cfg.switch_layers, seed=cfg.seed, shapes=cfg.switch_shapes)
                        ends = (
                            ("next", "previous")
                            if switch["plus"] < 0
                            else (world.SHAPES[switch["plus"]], world.SHAPES[switch["minus"]])
                        )
                        print(
                            f"mixing {step}: switch channel ({switch['layer']}, {switch['channel']}): + {ends[0]}, "
                            f"- {ends[1]}",
                            flush=True,
                        )
                    prng = np.random.default_rng([cfg.seed, stage, step, 7])
                    rows = np.flatnonzero(prng.random(len(ws)) < cfg.perturb_share)
                    styles_clean = styles
                    styles, pushed = perturb_styles(
                        gen,
                        styles,
                        stats,
                        rows,
                        prng,
                        cfg.perturb_sigmas,
                        cfg.perturb_draw,
                        cfg.perturb_layers,
                        switch,
                        pinned,
                    )
                fake = gen.synthesize(styles, noise_mode="const")
                if cfg.perturb_share and len(rows):
                    target = target.clone()
                    if cfg.perturb_target != "clean":
                        target[rows] = group_target(
                            gen,
                            mixing_splits(cfg),
                            attrs,
                            rows,
                            pushed,
                            fake[rows].detach(),
                            directed=cfg.perturb_target.startswith("directed"),
                            centre=cfg.directed_centre,
                            before=unpushed(gen, styles_clean, rows)
                            if cfg.perturb_target == "directed-shape"
                            else None,
                        )
                    else:
                        target[rows] = clean_target(fake[rows].detach())
                    if switch is not None:
                        target[rows] = switch_target(
                            target[rows], attrs, rows, pushed, styles, stats, switch, cfg.switch_sigmas
                        )
                weights = dict(region_weight=cfg.region_weight, border_weight=cfg.border_weight)
                if cfg.hard_weight or cfg.misread_weight:
                    extra = cfg.misread_weight * misread(fake, target) if cfg.misread_weight else None
                    loss = hard_weighted(pixel_loss(fake, target, **weights, per_sample=True), cfg.hard_weight, extra)
                else:  # the batch mean exactly as before the per-sample weights existed (same rounding)
                    loss = pixel_loss(fake, target, **weights)
                if cfg.distinct_weight:
                    loss = loss + cfg.distinct_weight * distinct_l1(fake, target, cfg.distinct_shapes)
                if cfg.affine_l1:
                    loss = loss + cfg.affine_l1 * affine_l1(gen)
                if cfg.style_sparsity:
                    loss = loss + cfg.style_sparsity * style_sparsity(gen, styles, cfg.sparsity_layers)
                if cfg.rgb_spread:
                    loss = loss + cfg.rgb_spread * rgb_spread(gen, styles)
            else:  # joint, refine: end to end from z; refine's truncation centre follows the mapping
                if name == "refine" and step % MEAN_W_EVERY == 0 and step:
                    gen.update_mean_w(n=10_000, seed=cfg.seed)
                z, attrs, psi = _batch(cfg, stage, step, cfg.batch_size)
                loss = pixel_loss(synthesize(gen, z, psi), world.render(attrs), region_weight=cfg.region_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done = step + 1
            if done % 50 == 0:
                wall, cpu = time.time() - t0, time.process_time() - cpu0
                print(f"{name} {done}/{steps} loss {loss.item():.4f} {wall:.0f}s wall {cpu:.0f}s cpu", flush=True)
            if done % cfg.checkpoint_every == 0 and done < steps:
                _save(
                    ckpt_path,
                    gen=gen.state_dict(),
                    encoder=encoder.state_dict(),
                    stage=stage,
                    step=done,
                    opt=opt.state_dict(),
                    mean_w=gen.mean_w.clone(),
                    **_stage5_state(stats, focus, switch),
                )
        print(f"stage {name} done: {time.time() - t0:.0f}s wall {time.process_time() - cpu0:.0f}s cpu", flush=True)
        stage, step = stage + 1, 0
        _save(ckpt_path, gen=gen.state_dict(), encoder=encoder.state_dict(), stage=stage, step=0, opt=None)
    gen.update_mean_w(n=10_000, seed=cfg.seed)  # latent_avg: the mean of mapping(z) over 10,000 seeded z
    save_generator(gen, cfg.out)
    print(f"trained in {time.time() - t0:.0f}s; wrote {cfg.out}", flush=True)
    return gen


def main(argv=None) -> None:
    with one_line_errors():  # a bad option, or an --init file that is not a generator
        train(config_from_args(GeneratorTrainConfig, __doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
