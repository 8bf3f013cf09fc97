"""The StyleCLIP paper's method comparison for any prompt: global direction, mapper, optimization side by side.

`compare_methods` edits the same latents with every available method and measures, per method: CLIP
similarity to the prompt before and after, mean absolute pixel change, seconds per image and, on the shapes
world, which attributes the pixel classifier finds unchanged. `method_strip` is `edit --method`'s picture.
"""

from __future__ import annotations

import time

import torch

from models.errors import AtlasError
from query.direction import DEFAULT_BETA
from query.edit_text import EditResult, as_dict, edit_text
from query.media import image_grid, png_path, save_png

COMPARE_METHODS = ("global", "mapper", "optimize")


def _settings(atlas, **extra) -> dict:
    return dict(atlas=str(atlas.data.path), generator_fingerprint=atlas.data.generator_fingerprint, **extra)


def is_shapes_world(atlas) -> bool:
    """The demo world: its class word and 32 px images, where shapes/classifier.py can judge edits."""
    from models.demo import NEUTRAL
    from shapes import world

    return atlas.data.neutral == NEUTRAL and int(atlas.generator.resolution) == world.RESOLUTION


@torch.no_grad()
def measure(atlas, prompt: str, original: torch.Tensor, edited: torch.Tensor, shapes: bool) -> dict:
    """CLIP cosine to t(prompt) before / after (means), mean |pixel change| in [-1, 1] units, kept attributes."""
    out = dict(mean_abs_change=float((edited.float() - original.float()).abs().mean()))
    embedder = atlas.embedder
    if embedder is not None:
        t = torch.as_tensor(atlas.text_embedding(prompt), dtype=torch.float32)
        t = t / t.norm().clamp_min(1e-12)
        out["clip_before"] = float((embedder.encode_image(original).float().cpu() @ t).mean())
        out["clip_after"] = float((embedder.encode_image(edited).float().cpu() @ t).mean())
    if shapes:
        from shapes import world
        from shapes.classifier import classify

        before, after = classify(original), classify(edited)
        out["kept"] = {a: float((after[a] == before[a]).mean()) for a in world.ATTRIBUTE_NAMES}
        out["after"] = {
            a: [
                getattr(
                    world, {"colour": "COLOURS", "shape": "SHAPES", "size": "SIZES", "background": "BACKGROUNDS"}[a]
                )[i]
                for i in after[a]
            ]
            for a in world.ATTRIBUTE_NAMES
        }
        out["valid_after"] = float(after["valid"].mean())
        from shapes.judge import TARGETS

        if prompt in TARGETS:  # an attribute word: the share of images that now have it
            attr, value = TARGETS[prompt]
            out["reached"] = float((after[attr] == value).mean())
    return out


def compare_methods(
    atlas,
    ws,
    prompt: str,
    out,
    *,
    neutral: str = "",
    alpha: float = 4.0,
    beta=DEFAULT_BETA,
    identity=None,
    optimize_options: dict | None = None,
    methods=COMPARE_METHODS,
    cell: int = 96,
    source: dict | None = None,
    progress: bool = False,
) -> dict:
    """Edit `ws` toward `prompt` with each method; write one PNG grid (rows: images; columns: original + methods)."""
    from query.mapper_store import atlas_mapper

    png_path(out)
    original = atlas.render(ws)
    shapes = is_shapes_world(atlas)
    columns, table, skipped = [original], [], {}
    for method in methods:
        if method == "mapper" and atlas_mapper(atlas, prompt) is None:
            skipped[method] = f"no mapper is stored for {prompt!r}"
            continue
        t0 = time.perf_counter()
        try:
            result: EditResult = edit_text(
                atlas,
                ws,
                prompt,
                method=method,
                neutral=neutral,
                alpha=alpha,
                beta=beta,
                identity=identity,
                optimize_options=optimize_options,
                progress=progress,
            )
        except AtlasError as exc:
            skipped[method] = str(exc)
            continue
        seconds = time.perf_counter() - t0
        columns.append(result.images)
        table.append(
            dict(
                method=method,
                seconds_per_image=seconds / len(original),
                **measure(atlas, prompt, original, result.images, shapes),
                details=as_dict(result)["details"],
            )
        )
    rows = [torch.stack([c[b] for c in columns]) for b in range(len(original))]
    settings = _settings(
        atlas,
        prompt=prompt,
        neutral=neutral,
        alpha=float(alpha),
        beta=beta,
        columns=["original"] + [r["method"] for r in table],
        **(source or {}),
    )
    save_png(out, image_grid(rows, cell), settings)
    return dict(
        settings,
        out=str(out),
        methods=table,
        skipped=skipped,
        shapes_world=shapes,
        original=measure(atlas, prompt, original, original, shapes) if shapes else None,
    )


def method_strip(
    atlas,
    ws,
    prompt: str,
    out,
    *,
    method: str = "auto",
    neutral: str = "",
    alpha: float = 4.0,
    beta=DEFAULT_BETA,
    identity=None,
    cell: int = 128,
    source: dict | None = None,
    optimize_options: dict | None = None,
    progress: bool = False,
) -> dict:
    """`edit --method`: one row per latent (original, edited) and the method edit_text chose, with its reason."""
    png_path(out)
    original = atlas.render(ws)
    result = edit_text(
        atlas,
        ws,
        prompt,
        method=method,
        neutral=neutral,
        alpha=alpha,
        beta=beta,
        identity=identity,
        optimize_options=optimize_options,
        progress=progress,
    )
    rows = [torch.stack([original[b], result.images[b]]) for b in range(len(original))]
    info = as_dict(result)
    settings = _settings(
        atlas,
        prompt=prompt,
        neutral=neutral,
        asked=method,
        alpha=float(alpha),
        beta=beta,
        method=info["method"],
        reason=info["reason"],
        **(source or {}),
    )
    save_png(out, image_grid(rows, cell), settings)
    return dict(
        settings,
        out=str(out),
        details=info["details"],
        mean_abs_change=float((result.images.float() - original.float()).abs().mean()),
    )


def table_lines(report: dict):
    """The compare table as text lines."""
    shapes = report["shapes_world"]
    head = f"{'method':>9} {'clip before':>11} {'clip after':>10} {'|dpix|':>7} {'s/image':>8}"
    if shapes:
        head += " reached  kept: shape colour size background"
    yield f"{report['prompt']!r}: {len(report['methods'])} methods -> {report['out']}"
    yield head
    for r in report["methods"]:
        nan = float("nan")
        line = (
            f"{r['method']:>9} {r.get('clip_before', nan):11.4f} {r.get('clip_after', nan):10.4f} "
            f"{r['mean_abs_change']:7.4f} {r['seconds_per_image']:8.3f}"
        )
        if shapes:
            line += f" {r['reached']:7.0%}" if "reached" in r else " " * 8
            line += "        " + " ".join(f"{r['kept'][a]:>4.0%}" for a in ("shape", "colour", "size", "background"))
        yield line
    for method, why in report["skipped"].items():
        yield f"{method:>9} skipped: {why}"


def parse_methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in str(text).split(",") if m.strip())
    bad = [m for m in methods if m not in COMPARE_METHODS]
    if bad or not methods:
        raise AtlasError(f"methods are a comma list of {', '.join(COMPARE_METHODS)}, got {text!r}.")
    return methods


__all__ = ["compare_methods", "measure", "method_strip", "parse_methods", "table_lines"]
