"""Training StyleCLIP's latent mapper for one prompt (SPEC §7): CLIP loss + lambda_L2 MSE + lambda_ID identity.

Training latents are sampled from the generator (truncated with psi, as StyleCLIP's coach does without a
latents file) or given (e.g. e4e inversions). Batches are drawn from a seeded permutation per epoch, so a
run is reproducible and, with `checkpoint=`, resumable from its last saved step with the same result.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from models.errors import AtlasError, CheckpointError, PromptError
from models.files import atomic_path
from models.latents import truncate
from models.numbers import check_finite
from query.config import MapperTrainConfig
from query.losses import ClipLoss
from query.losses import l2_scale as l2_factor
from query.mapper import Mapper, MapperConfig, level_bounds

TRAINING_FORMAT = "styleatlas-mapper-training"
NUM_LATENTS = 5000  # StyleCLIP's train_dataset_size when no latents file is given


def training_latents(
    generator, ws=None, num_latents: int = NUM_LATENTS, psi: float = MapperTrainConfig.psi, seed: int = 0
):
    """W+ [N, num_ws, w_dim]: the given codes (tensor, array or .npy/.pt file), else N seeded samples at psi."""
    num_ws, w_dim = int(generator.num_ws), int(generator.w_dim)
    mean_w = torch.as_tensor(generator.mean_w)
    if ws is None:
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(int(num_latents), int(generator.z_dim), generator=g)  # [N, z_dim] drawn on the CPU
        with torch.no_grad():
            w = torch.cat([generator.mapping(b.to(mean_w.device)) for b in z.split(1000)])  # [N, w_dim]
        w = truncate(w, mean_w, psi)
    elif isinstance(ws, (str, Path)):
        from query.media import load_latent

        w = load_latent(ws, w_dim, num_ws)
    else:
        from query.checks import check_latent

        w = check_latent(ws, generator)
    if w.ndim == 2:
        w = w[:, None].expand(-1, num_ws, -1)
    return w.detach().float().to(mean_w.device).contiguous()  # [N, num_ws, w_dim]


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """The rows of step `step`: consecutive slices of one seeded permutation per epoch (resumable by step)."""
    per_epoch = max(n // batch_size, 1)
    epoch, i = divmod(int(step), per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch))
    if n < batch_size:
        return perm
    return perm[i * batch_size : (i + 1) * batch_size]


def render(generator, ws: torch.Tensor) -> torch.Tensor:
    """W+ [B, num_ws, w_dim] -> images [B, 3, H, W] with the generator's stored noise (noise_mode const)."""
    return generator.synthesize(generator.styles(ws), noise_mode="const")


def train_mapper(
    generator,
    embedder,
    prompt: str,
    *,
    steps: int = MapperTrainConfig.steps,
    batch_size: int = MapperTrainConfig.batch_size,
    l2_lambda: float = MapperTrainConfig.l2_lambda,
    id_lambda: float = MapperTrainConfig.id_lambda,
    identity=None,
    seed: int = MapperTrainConfig.seed,
    ws=None,
    clip_lambda: float = 1.0,
    lr: float = MapperTrainConfig.lr,
    psi: float = MapperTrainConfig.psi,
    num_latents: int = NUM_LATENTS,
    levels=MapperTrainConfig.levels,
    norm: str = "ws",
    l2_norm: str = "generator",
    preprocess: str = "pool",
    checkpoint=None,
    save_every: int = 50,
    progress: bool = True,
) -> Mapper:
    """A Mapper for `prompt` (SPEC §7): minimise l_CLIP (1 - cos) + l_L2 MSE(w_hat, w) + l_ID (1 - identity cos).

    The identity term is used only when `identity` (an object with encode(images) -> unit [B, dim]) is given;
    its weight is id_lambda times the identity's `lambda_scale` (1 for ArcFace). Adam with lr on the stored
    (lr_mul-scaled) weights replaces StyleCLIP's Ranger. l2_norm "generator" (default) measures the MSE in
    units of this generator's W variance (MSE / var_w, so l2_lambda means the same on any generator, taking
    FFHQ's W as unit variance; losses.l2_scale, the rule optimisation uses too); "reference" is StyleCLIP's
    raw MSE. preprocess: CLIP's
    input, as in losses.ClipLoss. checkpoint: a file to save progress to every `save_every` steps and to resume
    from when it exists (same settings and models).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError("the mapper's prompt is empty; give the text to edit toward, e.g. 'red'.")
    prompt = prompt.strip()
    steps, batch_size = int(steps), int(batch_size)
    if steps < 1 or batch_size < 1:
        raise AtlasError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}.")
    if l2_norm not in ("generator", "reference"):
        raise AtlasError(f"l2_norm must be 'generator' or 'reference', got {l2_norm!r}.")
    for name, value in dict(l2_lambda=l2_lambda, id_lambda=id_lambda, clip_lambda=clip_lambda, lr=lr).items():
        check_finite(value, name, low=0)
    from index import fingerprint_embedder, fingerprint_generator

    latents = training_latents(generator, ws, num_latents, psi, seed)  # [N, num_ws, w_dim]
    num_ws, w_dim = int(generator.num_ws), int(generator.w_dim)
    config = MapperConfig(
        prompt=prompt, num_ws=num_ws, w_dim=w_dim, bounds=level_bounds(num_ws), levels=tuple(levels), norm=norm
    )
    device = latents.device
    mapper = Mapper(config, seed=seed).to(device).train()
    optimizer = torch.optim.Adam(mapper.parameters(), lr=lr)
    id_weight = float(id_lambda) * float(getattr(identity, "lambda_scale", 1.0)) if identity is not None else 0.0
    l2_scale = l2_factor(generator, l2_norm)  # 1 / var_w, the rule optimisation shares (query/losses.py)
    settings = dict(
        prompt=prompt,
        seed=int(seed),
        batch_size=batch_size,
        lr=float(lr),
        clip_lambda=float(clip_lambda),
        l2_lambda=float(l2_lambda),
        l2_norm=l2_norm,
        l2_scale=l2_scale,
        preprocess=preprocess,
        id_lambda=float(id_lambda),
        id_weight=id_weight,
        psi=float(psi),
        num_latents=int(len(latents)),
        latents="given" if ws is not None else "sampled",
        generator_fingerprint=fingerprint_generator(generator),
        clip_fingerprint=fingerprint_embedder(embedder, ()),
        identity=getattr(identity, "source", type(identity).__name__) if identity is not None else None,
    )
    history, start, seconds = [], 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        start, history, seconds = _resume(checkpoint, mapper, optimizer, config, settings)

    clip_loss = ClipLoss(embedder, prompt, preprocess)  # images -> [B] 1 - cos (query/losses.py, shared with optimize)
    frozen = [(p, p.requires_grad) for p in _frozen_parameters(generator, embedder, identity)]
    for p, _ in frozen:
        p.requires_grad_(False)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=steps,
        initial=min(start, steps),
        desc=f"mapper {prompt!r}",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
        leave=True,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        for step in range(start, steps):
            w = latents[batch_indices(len(latents), batch_size, step, seed).to(device)]  # [B, num_ws, w_dim]
            w_hat = mapper(w)
            x_hat = render(generator, w_hat)
            loss_clip = clip_loss(x_hat).mean()
            loss_l2 = (w_hat - w).square().mean()  # nn.MSELoss as in the reference
            loss = clip_lambda * loss_clip + l2_lambda * l2_scale * loss_l2
            losses = dict(clip=float(loss_clip.detach()), l2=float(loss_l2.detach()))
            if id_weight > 0:
                with torch.no_grad():
                    source = identity.encode(render(generator, w)).float()  # [B, dim] of the unedited images
                loss_id = (1 - (identity.encode(x_hat).float() * source).sum(-1)).mean()
                loss = loss + id_weight * loss_id
                losses["id"] = float(loss_id.detach())
            losses["total"] = float(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(losses)
            bar.update(1)
            bar.set_postfix(clip=f"{losses['clip']:.4f}", l2=f"{losses['l2']:.4f}", refresh=False)
            done = step + 1
            if checkpoint is not None and (done % max(int(save_every), 1) == 0 or done == steps):
                _save_progress(
                    checkpoint, mapper, optimizer, config, settings, done, history, seconds + time.perf_counter() - t0
                )
    finally:
        bar.close()
        for p, flag in frozen:
            p.requires_grad_(flag)
    seconds += time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0  # this process's CPU time (all threads) since start or resume
    mapper.eval()
    tail = history[-min(len(history), 20) :]
    final = {k: float(np.mean([h[k] for h in tail if k in h])) for k in (tail[0] if tail else {})}
    mapper.info = dict(
        settings,
        steps=steps,
        final_losses=final,
        seconds=round(seconds, 3),
        cpu_seconds=round(cpu_seconds, 3),
        history=[{k: round(v, 6) for k, v in h.items()} for h in history],
    )
    return mapper


def _frozen_parameters(*models):
    """Parameters of the fixed models, frozen while the mapper learns (no weight gradients to compute)."""
    seen = set()
    for m in models:
        for module in (m, getattr(m, "model", None), getattr(m, "clip", None), getattr(m, "backbone", None)):
            if isinstance(module, torch.nn.Module):
                for p in module.parameters():
                    if id(p) not in seen:
                        seen.add(id(p))
                        yield p


def _save_progress(path, mapper, optimizer, config, settings, step, history, seconds) -> None:
    state = dict(
        format=TRAINING_FORMAT,
        config=config.to_dict(),
        settings=settings,
        step=int(step),
        mapper=mapper.levels.state_dict(),
        optimizer=optimizer.state_dict(),
        history=history,
        seconds=float(seconds),
    )
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def _resume(path, mapper, optimizer, config, settings) -> tuple[int, list, float]:
    from models.files import read_checkpoint

    state = read_checkpoint(Path(path))
    if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
        raise CheckpointError(f"{path} is not a mapper training checkpoint; remove it or pass another path.")
    mine = {k: v for k, v in settings.items() if k != "identity"}
    theirs = {k: state["settings"].get(k) for k in mine}
    if theirs != mine or state["config"] != config.to_dict():
        diff = sorted(k for k in mine if theirs.get(k) != mine[k]) or ["config"]
        raise CheckpointError(
            f"{path} was saved by a run with other settings ({', '.join(diff)}); use the same "
            "settings to resume, or remove the file to start again."
        )
    mapper.levels.load_state_dict(state["mapper"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), list(state["history"]), float(state.get("seconds", 0.0))
