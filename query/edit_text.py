"""One edit call that picks the method: the global direction when it works here, else a stored mapper, else
optimization (SPEC §5-§7). `atlas.edit_text(ws, prompt)` -> EditResult(images, method, reason).

The auto test (calibrated on the shapes world, benchmarks/edit_auto.py): edit the given images along the
global direction, embed the originals and the edits with CLIP, and rank the prompt's text embedding t(prompt)
among the atlas vocabulary's t(p) by cosine to each image. The direction "measurably moves these images
toward the prompt" when, for the median image, fewer than AUTO_MAX_RANK (10 %) of the vocabulary phrases are
closer to the edited image than the prompt (CLIP would now describe it with the prompt) and the prompt ranks
higher than it did for the originals. On the shapes world the edits that work and those that do not lie far
apart: with the generator of stages 1-4, red (works) ranked 5 of 151 and circle (does not) 33 of 151, while the
direction of the CLIP change alone, cos(ΔE, Δt), did not separate them (red 0.36, circle 0.35); with the
shipped generator every prompt whose global edit works ranks within the nearest 7 % (blue 3 %, large 2 %),
circle 33 % and red 15 % (red now reaches red in 7 of 12 images at beta 0.15, so declining it is right). Three
prompts pass the test without passing the classifier's stricter verdict (cross and triangle: CLIP reads the
prompt in the edits, the classifier reaches the shape in 0 % and 58 %; dark background: reached, but the shape
kept in only 67 %); see benchmarks/edit_auto.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from models.errors import AtlasError
from query.direction import DEFAULT_BETA

METHODS = ("auto", "global", "mapper", "optimize")
AUTO_MAX_RANK = 0.10  # median share of vocabulary phrases nearer the edited image than the prompt; see above


@dataclasses.dataclass
class EditResult:
    """The edited images [B, 3, H, W], the method used ("global" | "mapper" | "optimize"), why, and its numbers."""

    images: torch.Tensor
    method: str
    reason: str
    ws: torch.Tensor | None = None  # the edited W+ codes (mapper, optimize); global edits move StyleSpace instead
    details: dict = dataclasses.field(default_factory=dict)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise AtlasError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    return method


@torch.no_grad()
def clip_movement(atlas, original: torch.Tensor, edited: torch.Tensor, prompt: str, neutral: str = "") -> dict:
    """How far an edit moved images toward `prompt` in CLIP space, per image and as medians.

    rank_before / rank_after: share of the atlas vocabulary (the prompt's own row left out) whose t(p) is
    nearer by cosine than t(prompt) to CLIP(image); gain: cos(E(edited), t) - cos(E(original), t);
    alignment: cos(E(edited) - E(original), Δt). t uses the atlas's templates, like its directions.
    """
    embedder = atlas.embedder
    if embedder is None:
        raise AtlasError(
            "the auto method tests the global direction with CLIP; pass embedder= (CLI: --clip) "
            "or choose a method (global, mapper, optimize)."
        )
    t = torch.as_tensor(atlas.text_embedding(prompt), dtype=torch.float32)  # [D]
    t = t / t.norm().clamp_min(1e-12)
    delta_t = torch.as_tensor(atlas.delta_t(prompt, neutral), dtype=torch.float32)  # [D]
    vocab = torch.as_tensor(atlas.data.vocab_embeddings, dtype=torch.float32)  # [V, D]
    own = atlas.vocab_index(prompt)
    if own is not None:
        vocab = torch.cat([vocab[:own], vocab[own + 1 :]])
    e0 = embedder.encode_image(original).float().cpu()  # [B, D]
    e1 = embedder.encode_image(edited).float().cpu()  # [B, D]

    def rank(e):  # [B] share of phrases nearer than the prompt
        return ((e @ vocab.T) > (e @ t)[:, None]).float().mean(1) if len(vocab) else torch.zeros(len(e))

    change = e1 - e0
    alignment = (change @ delta_t) / change.norm(dim=1).clamp_min(1e-12)  # [B]
    out = dict(
        rank_before=rank(e0).numpy(),
        rank_after=rank(e1).numpy(),
        gain=(e1 @ t - e0 @ t).numpy(),
        alignment=alignment.numpy(),
    )
    out.update({f"median_{k}": float(np.median(v)) for k, v in list(out.items())})
    return out


def global_works(movement: dict, max_rank: float = AUTO_MAX_RANK) -> bool:
    """The auto test: the prompt is among the nearest max_rank of the vocabulary for the median edited image,
    and nearer than for the originals."""
    return movement["median_rank_after"] <= max_rank and movement["median_rank_after"] < movement["median_rank_before"]


def edit_text(
    atlas,
    ws,
    prompt: str,
    *,
    method: str = "auto",
    neutral: str = "",
    alpha: float = 4.0,
    beta=DEFAULT_BETA,
    identity=None,
    noise_mode: str = "const",
    optimize_options: dict | None = None,
    max_rank: float = AUTO_MAX_RANK,
    progress: bool = False,
) -> EditResult:
    """Edit W / W+ codes toward `prompt` by `method`; "auto" tries global, then a stored mapper, then optimization."""
    from query.checks import check_latent

    check_method(method)
    gen = atlas.generator
    ws = check_latent(ws, gen)
    if method == "global":
        return _global(atlas, ws, prompt, neutral, alpha, beta, noise_mode, "asked for the global direction")
    if method == "mapper":
        result = _mapper(atlas, ws, prompt, noise_mode, "asked for the mapper")
        if result is None:
            raise AtlasError(
                f"no mapper is stored for {prompt!r} in this atlas; train one with "
                f"query.py mapper train {prompt!r} (or use --method global / optimize)."
            )
        return result
    if method == "optimize":
        return _optimize(atlas, ws, prompt, identity, noise_mode, optimize_options, "asked for optimization", progress)

    # auto: the global direction when it measurably works on these images
    details = {}
    try:
        result = _global(atlas, ws, prompt, neutral, alpha, beta, noise_mode, "")
    except AtlasError as exc:  # no channel passes beta, prompt not embeddable ...
        why = f"no global direction ({str(exc).rstrip('.')})"
    else:
        original = atlas.render(ws, noise_mode=noise_mode)
        movement = clip_movement(atlas, original, result.images, prompt, neutral)
        details = {k: v for k, v in movement.items() if k.startswith("median_")}
        details["max_rank"] = max_rank
        numbers = (
            f"CLIP ranks it in the nearest {movement['median_rank_after']:.0%} of the vocabulary for the "
            f"median edited image (needs <= {max_rank:.0%}; originals {movement['median_rank_before']:.0%})"
        )
        if global_works(movement, max_rank):
            result.reason = f"the global direction moves these images toward {prompt!r}: {numbers}"
            result.details.update(details)
            return result
        why = f"the global direction does not move these images toward {prompt!r} ({numbers})"
    result = _mapper(atlas, ws, prompt, noise_mode, why)
    if result is None:
        result = _optimize(
            atlas, ws, prompt, identity, noise_mode, optimize_options, f"{why} and no mapper is stored for it", progress
        )
    result.details.update(details)
    return result


@torch.no_grad()
def _global(atlas, ws, prompt, neutral, alpha, beta, noise_mode, reason) -> EditResult:
    d = atlas.direction(prompt, neutral, beta)
    images = atlas.edit(ws, d, alpha, noise_mode=noise_mode)
    return EditResult(
        images=images, method="global", reason=reason, details=dict(num_c=int(d.num_c), beta=d.beta, alpha=float(alpha))
    )


@torch.no_grad()
def _mapper(atlas, ws, prompt, noise_mode, why) -> EditResult | None:
    from query.mapper_store import atlas_mapper

    gen = atlas.generator
    mapper = atlas_mapper(atlas, prompt, device=torch.as_tensor(gen.mean_w).device)
    if mapper is None:
        return None
    ws_hat = mapper(ws)  # [B, num_ws, w_dim]
    images = gen.synthesize(gen.styles(ws_hat), noise_mode=noise_mode)
    steps = mapper.info.get("steps")
    return EditResult(
        images=images,
        method="mapper",
        ws=ws_hat,
        reason=f"{why}; used the mapper stored for {prompt!r}" + (f" ({steps} training steps)" if steps else ""),
        details=dict(mapper_steps=steps),
    )


def _optimize(atlas, ws, prompt, identity, noise_mode, options, why, progress) -> EditResult:
    from query.optimization import optimize

    gen, embedder = atlas.generator, atlas.embedder
    if embedder is None:
        raise AtlasError("optimization needs the atlas's CLIP; pass embedder= (CLI: --clip).")
    options = dict(options or {})
    ws_hat = optimize(gen, embedder, ws, prompt, identity=identity, progress=progress, **options)
    with torch.no_grad():
        images = gen.synthesize(gen.styles(ws_hat), noise_mode=noise_mode)
    return EditResult(
        images=images,
        method="optimize",
        ws=ws_hat,
        reason=f"{why}; optimized the latents",
        details=dict(steps=options.get("steps", 300)),
    )


def as_dict(result: EditResult) -> dict:
    """The JSON-friendly part of an EditResult (no tensors)."""
    details = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.details.items()}
    return dict(method=result.method, reason=result.reason, details=details)
