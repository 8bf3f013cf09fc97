"""Inversion by optimisation (SPEC §9): images -> W+ latents for any generator, no LPIPS/VGG weights needed.

A projector in the manner of StyleGAN2's (rosinality `projector.py`): W+ starts at mean_w (or at an
encoder's codes), Adam with the ramped lr (losses.ramped_lr), latent exploration noise that fades over
the first 75 % of the steps; the loss is a multi-scale pixel MSE (full size, then average-pooled halves
down to 8 px), plus optional CLIP-image and identity terms. With optimize_noise the per-image noise maps
are optimised too, with StyleGAN2's noise regularisation (autocorrelation penalty at every scale).
Reports reconstruction PSNR; the returned latents reproduce the images with the generator's const noise.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F

from models.errors import AtlasError
from query.config import InvertConfig
from query.images import psnr
from query.losses import IdentityLoss, frozen, noise_fade, ramped_lr, w_plus, w_variance


def pixel_loss(x: torch.Tensor, y: torch.Tensor, min_scale: int = 8) -> torch.Tensor:
    """Mean over scales (full, 1/2, 1/4 ... down to min_scale px) of the per-image MSE: [B]."""
    losses = [(x - y).square().flatten(1).mean(1)]
    while x.shape[-1] // 2 >= min_scale:
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        losses.append((x - y).square().flatten(1).mean(1))
    return torch.stack(losses).mean(0)


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's penalty on spatial autocorrelation of each noise map, at every scale down to 8 px: [B]."""
    total = 0
    for n in noises:
        while True:
            total = (
                total + (n * torch.roll(n, 1, 3)).mean((1, 2, 3)) ** 2 + (n * torch.roll(n, 1, 2)).mean((1, 2, 3)) ** 2
            )
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def _normalize_noise(noises: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for n in noises:
            mean, std = n.mean((1, 2, 3), keepdim=True), n.std((1, 2, 3), keepdim=True)
            n.sub_(mean).div_(std.clamp_min(1e-8))


def invert(
    generator,
    images: torch.Tensor,
    *,
    steps: int = InvertConfig.steps,
    embedder=None,
    identity=None,
    seed: int = InvertConfig.seed,
    encoder=None,
    lr: float = InvertConfig.lr,
    optimize_noise: bool = InvertConfig.optimize_noise,
    clip_lambda: float = InvertConfig.clip_lambda,
    id_lambda: float = InvertConfig.id_lambda,
    progress: bool = True,
    return_details: bool = False,
):
    """Project images [B, 3, R, R] in [-1, 1] (the generator's resolution) into W+ -> [B, num_ws, w_dim].

    encoder (models.encoder.load_encoder): start from its codes instead of mean_w (steps=0: the encoder alone).
    Details (return_details): psnr per image (const noise), curves, the config, and the noise maps if optimised.
    """
    cfg = InvertConfig(
        steps=steps, lr=lr, clip_lambda=clip_lambda, id_lambda=id_lambda, optimize_noise=optimize_noise, seed=seed
    ).check()
    res = int(generator.resolution)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise AtlasError(f"invert takes images [B, 3, {res}, {res}] in [-1, 1], got {shape}.")
    if images.shape[-2:] != (res, res):
        raise AtlasError(
            f"images are {images.shape[-1]}x{images.shape[-2]} px; this generator makes {res}x{res} "
            "(query.images.read_images resizes files)."
        )
    device = generator.mean_w.device
    target = images.detach().float().to(device)
    b = target.shape[0]
    if encoder is not None:
        with torch.no_grad():
            start = encoder.encode(target).to(device)
    else:
        start = generator.mean_w.detach().float()[None].expand(b, -1)
    latent = w_plus(generator, start).requires_grad_(True)  # [B, num_ws, w_dim]
    params = [latent]
    noises = None
    if optimize_noise:
        noises = [
            getattr(generator.noises, f"noise_{j}").detach().float().repeat(b, 1, 1, 1).clone().to(device)
            for j in range(generator.num_layers)
        ]  # start at the const noise: [B, 1, r, r] each
        for n in noises:
            n.requires_grad_(True)
        params += noises
    rng = torch.Generator().manual_seed(int(seed))
    w_std = (w_variance(generator) * int(generator.w_dim)) ** 0.5 if steps else 0.0  # total std, as the projector
    clip_target = id_loss = None
    with torch.no_grad():
        if embedder is not None and clip_lambda > 0:
            clip_target = embedder.encode_image(target).float()  # [B, D]
        if identity is not None and id_lambda > 0:
            id_loss = IdentityLoss(identity, target)
    opt = torch.optim.Adam(params, lr=lr)
    curves = dict(loss=[], pixel=[], clip=[], identity=[], psnr=[])
    from query.optimization import _bar

    bar = _bar(steps, progress, "invert")
    weights = frozen(generator)
    weights.__enter__()
    try:
        for i in range(steps):
            t = i / steps
            opt.param_groups[0]["lr"] = ramped_lr(t, lr)
            strength = w_std * cfg.noise_strength * noise_fade(t, cfg.noise_ramp)
            jitter = torch.randn(latent.shape, generator=rng).to(device) * strength
            out = generator.synthesize(generator.styles(latent + jitter), noise=noises)  # [B, 3, R, R]
            pix = pixel_loss(out, target, cfg.min_scale)  # [B]
            per_image = pix
            c = torch.zeros_like(pix)
            ident = torch.zeros_like(pix)
            if clip_target is not None:
                c = 1 - (embedder.encode_image(out).float() * clip_target).sum(-1)
                per_image = per_image + clip_lambda * c
            if id_loss is not None:
                ident = id_loss(out)
                per_image = per_image + id_lambda * ident
            if noises is not None:
                per_image = per_image + cfg.noise_regularize * noise_regularization(noises)
            opt.zero_grad(set_to_none=True)
            per_image.sum().backward()  # images independent of their batch
            opt.step()
            if noises is not None:
                _normalize_noise(noises)
            for key, value in (("loss", per_image), ("pixel", pix), ("clip", c), ("identity", ident)):
                curves[key].append(float(value.detach().mean()))
            curves["psnr"].append(float(psnr(out, target).median()))
            bar.update(1)
            bar.set_postfix(psnr=f"{curves['psnr'][-1]:.2f}")
    finally:
        weights.__exit__(None, None, None)
        bar.close()
    result = latent.detach()
    if not return_details:
        return result
    with torch.no_grad():
        recon = generator.synthesize(generator.styles(result), noise_mode="const")
        details = dict(
            psnr=psnr(recon, target).tolist(),
            curves=curves,
            config=asdict(cfg),
            start="encoder" if encoder is not None else "mean_w",
        )
        if noises is not None:
            recon_n = generator.synthesize(generator.styles(result), noise=noises)
            details.update(psnr_optimized_noise=psnr(recon_n, target).tolist(), noise=[n.detach() for n in noises])
    return result, details
