"""Latent optimization, the first fallback (SPEC §6): StyleCLIP's `run_optimization.py` edit mode on any generator.

W+ starts at the given codes; Adam with the reference's ramped lr minimises, per image,
    (1 - cos(CLIP(G(w)), CLIP(text))) + l2_lambda * scale * ||w - w_s||^2
        + spread_lambda * scale * ||(w - w_s) - mean over layers of (w - w_s)||^2
        + id_lambda * lambda_scale * (1 - cos(R(G(w)), R(G(w_s))))
`scale` (losses.l2_scale: 1 / this generator's W variance) carries the L2 weight over to other generators;
the spread term (losses.latent_spread; 0 = the reference) keeps the edit near the start's layer structure;
the identity's `lambda_scale` carries id_lambda (tuned with ArcFace) over to other identity models. Unlike
the reference, CLIP sees `augment` randomly warped views of each image per step by default (4; 0 = the
reference's single view), and the generator renders the latent plus exploration noise (`latent_noise` W
stds per coordinate, fading to 0 over the first `noise_ramp` of the steps, StyleGAN2's projector schedule;
0 = the reference): the noise carries a latent across dips of the CLIP score that plain descent stops at
(MODEL_CARD.md "Fallbacks" for both).
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from query.config import OptimizeConfig
from query.losses import (
    ClipLoss,
    IdentityLoss,
    frozen,
    l2_scale,
    latent_l2,
    latent_spread,
    noise_fade,
    ramped_lr,
    w_plus,
    w_variance,
)


def optimize(
    generator,
    embedder,
    ws,
    prompt: str,
    *,
    steps: int = OptimizeConfig.steps,
    lr: float = OptimizeConfig.lr,
    l2_lambda: float = OptimizeConfig.l2_lambda,
    id_lambda: float = OptimizeConfig.id_lambda,
    identity=None,
    seed: int = OptimizeConfig.seed,
    preprocess: str = OptimizeConfig.preprocess,
    l2_norm: str = OptimizeConfig.l2_norm,
    noise_mode: str = OptimizeConfig.noise_mode,
    augment: int = OptimizeConfig.augment,
    latent_noise: float = OptimizeConfig.latent_noise,
    noise_ramp: float = OptimizeConfig.noise_ramp,
    spread_lambda: float = OptimizeConfig.spread_lambda,
    progress: bool = True,
    return_curves: bool = False,
):
    """Edit W/W+ codes toward `prompt` by optimisation -> W+ [B, num_ws, w_dim] (and the loss curves if asked).

    `identity` (an identity embedder, e.g. models.identity.load_identity) adds the identity term; without one
    it is off whatever id_lambda says. Curves: per step, the mean over images of each term and the lr.
    """
    cfg = OptimizeConfig(
        steps=steps,
        lr=lr,
        l2_lambda=l2_lambda,
        id_lambda=id_lambda,
        preprocess=preprocess,
        l2_norm=l2_norm,
        noise_mode=noise_mode,
        seed=seed,
        augment=augment,
        latent_noise=latent_noise,
        noise_ramp=noise_ramp,
        spread_lambda=spread_lambda,
    ).check()
    source = w_plus(generator, ws)  # [B, num_ws, w_dim]
    gen_noise = torch.Generator().manual_seed(int(seed))

    def render(w):
        return generator.synthesize(
            generator.styles(w), noise_mode=noise_mode, **({"generator": gen_noise} if noise_mode == "random" else {})
        )

    clip_loss = ClipLoss(embedder, prompt, preprocess, augment=augment, seed=seed)
    with torch.no_grad():
        id_loss = IdentityLoss(identity, render(source)) if identity is not None and id_lambda > 0 else None
    latent_terms = l2_lambda > 0 or spread_lambda > 0
    var_w = w_variance(generator) if latent_noise > 0 or (latent_terms and l2_norm == "generator") else None
    scale = l2_scale(generator, l2_norm, var_w) if latent_terms else 0.0
    w_std = var_w**0.5 if latent_noise > 0 else 0.0  # per coordinate
    # id_lambda is ArcFace's weight; another identity states how its 1 - cos compares (models/identity.py)
    id_weight = id_lambda * float(getattr(identity, "lambda_scale", 1.0))
    latent = source.clone().requires_grad_(True)
    with frozen(generator):
        curves = _run(render, clip_loss, id_loss, latent, source, cfg, scale, id_weight, w_std, progress)
    result = latent.detach()
    if return_curves:
        curves["config"] = asdict(cfg)
        curves["identity_used"] = id_loss is not None
        return result, curves
    return result


def _run(render, clip_loss, id_loss, latent, source, cfg, scale, id_weight, w_std, progress) -> dict:
    """The Adam loop of `optimize`; returns the per-step curves."""
    steps, lr, l2_lambda = cfg.steps, cfg.lr, cfg.l2_lambda
    opt = torch.optim.Adam([latent], lr=lr)
    # one noise draw per step shared by the batch ([num_ws, w_dim]), so an image's path does not depend on its batch
    noise_rng = torch.Generator().manual_seed(int(cfg.seed))
    curves = dict(loss=[], clip=[], l2=[], spread=[], identity=[], lr=[])
    bar = _bar(steps, progress, f"optimize {clip_loss.prompt[:24]!r}")
    try:
        for i in range(steps):
            step_lr = ramped_lr(i / steps, lr)
            opt.param_groups[0]["lr"] = step_lr
            strength = w_std * cfg.latent_noise * noise_fade(i / steps, cfg.noise_ramp) if w_std else 0.0
            if strength > 0:
                jitter = torch.randn(latent.shape[1:], generator=noise_rng).to(latent.device) * strength
                images = render(latent + jitter)  # [B, 3, H, W]
            else:
                images = render(latent)  # [B, 3, H, W]
            c = clip_loss(images)  # [B]
            l2 = latent_l2(latent, source) * scale  # [B]
            spread = latent_spread(latent, source) * scale if cfg.spread_lambda else torch.zeros_like(c)  # [B]
            ident = id_loss(images) if id_loss is not None else torch.zeros_like(c)  # [B]
            per_image = c + l2_lambda * l2 + cfg.spread_lambda * spread + id_weight * ident  # [B]
            loss = per_image.sum()  # each latent's gradient depends on its own image only
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for key, value in (("loss", per_image), ("clip", c), ("l2", l2), ("spread", spread), ("identity", ident)):
                curves[key].append(float(value.detach().mean()))
            curves["lr"].append(step_lr)
            bar.update(1)
            bar.set_postfix(loss=f"{curves['loss'][-1]:.4f}", clip=f"{curves['clip'][-1]:.4f}")
    finally:
        bar.close()
    return curves


def _bar(total: int, enabled, desc: str):
    """A tqdm bar; `enabled` may instead be a callable progress(step, total), called after every step (web jobs)."""
    from tqdm.auto import tqdm

    if callable(enabled):
        return _Callback(total, enabled)

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True, leave=False)


class _Callback:
    """The part of tqdm's interface the loops use, reporting progress(step, total) instead of drawing a bar."""

    def __init__(self, total: int, progress):
        self.total, self.step, self.progress = total, 0, progress

    def update(self, n: int = 1):
        self.step += n
        self.progress(self.step, self.total)

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass
