"""Losses the fallbacks share (SPEC §6, §7, §8): CLIP text loss, identity loss, W+ L2, the ramped lr.

Every loss returns one value per image ([B]); callers sum them, so each latent's gradient (and, with
Adam's per-element steps, its whole trajectory) is independent of the batch it is optimised in.
"""

from __future__ import annotations

import contextlib
import inspect
import math

import torch
import torch.nn.functional as F

from models.errors import AtlasError, PromptError

CLIP_PREPROCESS = ("pool", "clip", "reference")


def ramped_lr(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """StyleCLIP's schedule at progress t in [0, 1): linear warm-up over `rampup`, cosine ramp-down over `rampdown`."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def noise_fade(t: float, ramp: float) -> float:
    """StyleGAN2's projector schedule for latent exploration noise at progress t in [0, 1): a factor falling
    quadratically from 1 to 0 over the first `ramp` of the steps, then 0 (optimize's and invert's noise)."""
    return max(0.0, 1.0 - t / ramp) ** 2


@contextlib.contextmanager
def frozen(module):
    """Weights of `module` without gradients for the duration (the latents are what is optimised), then as before."""
    params = list(module.parameters()) if hasattr(module, "parameters") else []
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def w_plus(generator, ws: torch.Tensor) -> torch.Tensor:
    """W [B, w_dim] or W+ [B, num_ws, w_dim] -> a fresh float W+ copy [B, num_ws, w_dim] (clear error otherwise)."""
    from query.checks import check_latent

    ws = check_latent(ws, generator)
    if ws.ndim == 2:
        ws = ws[:, None].expand(-1, int(generator.num_ws), -1)
    return ws.detach().float().clone()


@torch.no_grad()
def w_variance(generator, n: int = 10_000, seed: int = 0, batch: int = 1000) -> float:
    """Mean per-element variance of w = mapping(z) over n seeded z: the scale of this generator's W."""
    g = torch.Generator().manual_seed(seed)
    device = generator.mean_w.device
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), int(generator.z_dim), generator=g)
        w = generator.mapping(z.to(device)).double()  # [b, w_dim]
        total, total_sq, count = total + w.sum(0), total_sq + (w**2).sum(0), count + w.shape[0]
    mean = total / count
    return float((total_sq / count - mean**2).clamp_min(0).mean())


def l2_scale(generator, mode: str = "generator", variance: float | None = None) -> float:
    """Factor on a reference L2 term to the start latent so that its lambda behaves alike on any generator.

    The one home of the fallbacks' L2 normalisation, one rule for both: mode "generator" (default) measures
    the squared distance in units of this generator's W variance, 1 / var_w (w_variance), with FFHQ's W taken
    as unit variance so that the reference weights apply there as they are; each fallback keeps its
    reference's reduction (optimisation, SPEC §6: the sum of squares over W+, l2_lambda 0.008; the mapper,
    SPEC §7: the MSE, l2_lambda 0.8). mode "reference": 1, StyleCLIP's raw terms. On the shapes world
    (var_w 0.126) the factor is 7.9. Measured there (MODEL_CARD.md, "Fallbacks"): for optimisation this rule
    made as many circles as the earlier sqrt(9216 / (num_ws * w_dim)) = 4.24 and kept more colour; no factor
    loses the colour in half the circle edits, 9216 / N = 18 (x 8 var_w) stops the edit. For the mapper it
    is what kept the shapes-world attributes (benchmarks/mapper.py). `variance`: this generator's
    w_variance, when the caller has measured it already.
    """
    if mode == "reference":
        return 1.0
    if mode != "generator":
        raise AtlasError(f"l2_norm must be 'generator' or 'reference', got {mode!r}.")
    return 1.0 / max(w_variance(generator) if variance is None else variance, 1e-12)


def latent_l2(ws: torch.Tensor, ws_source: torch.Tensor) -> torch.Tensor:
    """||w - w_s||^2 summed over every W+ element, per image: [B]."""
    return (ws - ws_source).square().flatten(1).sum(1)


def latent_spread(ws: torch.Tensor, ws_source: torch.Tensor) -> torch.Tensor:
    """How far an edit pulls the layers of W+ apart, per image: [B]. The squared distance of each layer's change
    from the mean change over the layers, summed: 0 for any edit that moves every layer alike (an edit in W),
    whatever the start's own layer structure (a W code, or an e4e W+ code). A generator trained without style
    mixing has seen only codes whose layers agree; e4e's delta regularisation keeps W+ near W for the same reason."""
    delta = ws - ws_source  # [B, num_ws, w_dim]
    return (delta - delta.mean(1, keepdim=True)).square().flatten(1).sum(1)


def reference_clip_input(embedder, images: torch.Tensor) -> torch.Tensor:
    """StyleCLIP's exact CLIP input: the raw [-1, 1] image, nearest-upsampled then average-pooled to CLIP's size."""
    size = int(embedder.image_size)
    h = images.shape[-1]
    factor = max(7, -(-size // h))  # 7x as the reference (1024 -> 7168 -> pool 32 -> 224), more if still small
    x = F.interpolate(images.float(), scale_factor=factor, mode="nearest")
    return F.adaptive_avg_pool2d(x, size)  # [B, 3, S, S], not normalised (as in the reference)


def random_views(images: torch.Tensor, views: int, generator: torch.Generator) -> torch.Tensor:
    """[B, 3, H, W] -> [views, B, 3, H, W]: each view one random small affine warp shared by the whole batch.

    A view shifts by up to 1/16 of the side (sub-pixel amounts included), zooms by 0.9..1.1 and mirrors
    left-right half the time (bilinear, border pixels repeated). The warps are drawn once per view, not per
    image, so an image's trajectory does not depend on the batch it is in.
    """
    b = images.shape[0]
    out = []
    for _ in range(views):
        u = torch.rand(4, generator=generator)  # shift x, shift y, zoom, mirror
        zoom = 0.9 + 0.2 * float(u[2])
        mirror = -1.0 if float(u[3]) < 0.5 else 1.0
        theta = torch.tensor(
            [[mirror * zoom, 0.0, (float(u[0]) - 0.5) / 4], [0.0, zoom, (float(u[1]) - 0.5) / 4]],
            dtype=images.dtype,
            device=images.device,
        )  # [2, 3], translations in [-1, 1] units: +-1/8 of the half-side = +-1/16 of the side
        grid = F.affine_grid(theta.expand(b, 2, 3), list(images.shape), align_corners=False)
        out.append(F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False))
    return torch.stack(out)


class ClipLoss:
    """1 - cos(CLIP_image(images), CLIP_text(prompt)) per image (SPEC §6).

    preprocess: "pool" (SPEC §6: average-pool to CLIP's input size, CLIP's normalisation), "clip" (resize +
    centre crop as CLIP was trained) or "reference" (StyleCLIP's code: the raw [-1, 1] image, upsampled 7x
    and average-pooled, no mean/std normalisation; needs an open_clip ClipEmbedder).
    augment: 0 (the reference) or the number of randomly warped views (random_views) whose losses are averaged
    each call, so that the optimiser cannot satisfy CLIP with pixel patterns that only one exact framing reads
    as the prompt. seed: the views' random stream.
    """

    def __init__(self, embedder, prompt: str, preprocess: str = "pool", augment: int = 0, seed: int = 0):
        if preprocess not in CLIP_PREPROCESS:
            raise AtlasError(f"preprocess must be one of {', '.join(CLIP_PREPROCESS)}, got {preprocess!r}.")
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptError("the prompt is empty; give the text the edit should move towards, e.g. 'circle'.")
        if preprocess == "reference" and not (hasattr(embedder, "model") and hasattr(embedder, "image_size")):
            raise AtlasError("preprocess='reference' needs an open_clip ClipEmbedder (models.clip.load_clip).")
        if not isinstance(augment, int) or augment < 0:
            raise AtlasError(f"augment must be an integer >= 0 (views per step; 0 = off), got {augment!r}.")
        self.embedder, self.prompt, self.preprocess, self.augment = embedder, prompt, preprocess, augment
        self.views_rng = torch.Generator().manual_seed(int(seed))
        # a protocol embedder (CONTRACT: encode_image(images)) has no preprocess option and resizes on its own
        self._takes_preprocess = "preprocess" in inspect.signature(embedder.encode_image).parameters
        with torch.no_grad():
            self.text = embedder.encode_text([prompt]).float().detach()  # [1, D]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D] unit image embeddings, differentiable."""
        if self.preprocess == "reference":
            model = self.embedder.model
            return F.normalize(model.encode_image(reference_clip_input(self.embedder, images)).float(), dim=-1)
        if not self._takes_preprocess:
            return self.embedder.encode_image(images)
        return self.embedder.encode_image(images, preprocess=self.preprocess)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        text = self.text.to(images.device)  # [1, D]
        if not self.augment:
            return 1 - (self.embed(images) * text).sum(-1)  # [B]
        views = random_views(images, self.augment, self.views_rng)  # [V, B, 3, H, W]
        cos = (self.embed(views.flatten(0, 1)) * text).sum(-1)  # [V * B]
        return 1 - cos.view(self.augment, -1).mean(0)  # [B]


class IdentityLoss:
    """1 - cos(R(images), R(source)) per image (SPEC §8), R an identity embedder; the source is fixed."""

    def __init__(self, identity, source_images: torch.Tensor):
        self.identity = identity
        with torch.no_grad():
            self.target = identity.encode(source_images).float().detach()  # [B, dim]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return 1 - (self.identity.encode(images).float() * self.target.to(images.device)).sum(-1)  # [B]
