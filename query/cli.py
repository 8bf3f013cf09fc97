"""`query.py` / `styleatlas-query`: a thin click layer over query.Atlas (directions, edits, exploration, export)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import click
from click.core import ParameterSource

from models.cli import default_of, device_option, emit, json_option, print_warnings, resumable, run_cli, seed_option
from models.errors import AtlasError
from models.seeds import DEFAULT_PSI
from query.atlas import Atlas
from query.catalog import DEFAULT_TIMEOUT_S, run_sql
from query.config import GridConfig, InvertConfig, MapperTrainConfig, OptimizeConfig, StripConfig
from query.direction import DEFAULT_BETA, parse_beta
from query.opening import from_atlas, open_atlas, recorded
from query.report import channel_report, channels_report, direction_report

DEFAULT_ATLAS = Path("atlas")


# the library's keyword names in its messages -> this CLI's flags (longest first)
FLAG_WORDS = (("top_k=N", "--top-k N"), ("top_k", "--top-k"), ("check_fingerprints=False", "--no-check-fingerprints"))


def flag_words(message: str) -> str:
    """A library message as a CLI user reads it: 'or top_k=N' -> 'or --top-k N'."""
    for word, flag in FLAG_WORDS:
        message = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w=])", flag, message)
    return message


def atlas_command(group, name=None):
    """A subcommand with the shared options (--atlas, models, --device, --json); library keywords in its errors
    are written as this CLI's flags."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(**kwargs):
            opts = {
                k: kwargs.pop(k)
                for k in ("atlas", "generator", "clip", "pretrained", "device", "no_check_fingerprints")
            }
            try:
                return fn(opts, **kwargs)
            except AtlasError as exc:  # the library names its keywords (top_k=N); here they are flags
                raise type(exc)(flag_words(str(exc))) from None

        for decorator in reversed(
            [
                group.command(name),
                click.option(
                    "--atlas",
                    type=click.Path(path_type=Path),
                    default=DEFAULT_ATLAS,
                    show_default=True,
                    help="Atlas folder (built by build_index.py).",
                ),
                click.option(
                    "--generator",
                    default=None,
                    help='Generator checkpoint or "demo" (default: the atlas\'s, else demo); loaded only for edits.',
                ),
                click.option(
                    "--clip",
                    default=None,
                    help='CLIP model name, JSON config or "demo" (default: the '
                    "atlas's, else demo); loaded only for prompts outside the vocabulary.",
                ),
                click.option("--pretrained", default=None, help="open_clip pretrained tag or local weights."),
                device_option(),
                click.option(
                    "--no-check-fingerprints",
                    is_flag=True,
                    help="Experts: use the given models even if the atlas was built with others.",
                ),
                json_option(),
            ]
        ):
            run = decorator(run)
        return run

    return wrap


direction_options = [
    click.option("--neutral", default="", help="Neutral prompt (default: the atlas's class word)."),
    click.option(
        "--beta", default=str(DEFAULT_BETA), show_default=True, help="Disentanglement threshold in (0, 1), or auto."
    ),
    click.option("--top-k", type=int, default=None, help="Keep the N strongest channels instead of a beta."),
]


def with_direction_options(fn):
    for option in reversed(direction_options):
        fn = option(fn)
    return fn


image_options = [
    click.option(
        "--encoder",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="e4e checkpoint (e4e_ffhq_encode.pt) to start the inversion from.",
    ),
    click.option(
        "--invert-steps",
        type=int,
        default=InvertConfig.steps,
        show_default=True,
        help="Optimisation steps of the inversion (0 with --encoder: the encoder alone).",
    ),
    click.option(
        "--identity",
        default=None,
        help='Identity model: model_ir_se50.pth, "demo" or "none" (default: demo with the demo generator, else none).',
    ),
]


def with_image_options(fn):
    for option in reversed(image_options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx):
    """Query a StyleAtlas: global directions (SPEC §5), edits, channel exploration, SQL, bulk export.

    Prompts found in the atlas vocabulary need no CLIP; compose prompts as "smile:1 + curly hair:0.5".
    """
    print_warnings(ctx)


@atlas_command(cli)
@click.argument("prompt")
@with_direction_options
@click.option("-n", "--show", type=int, default=10, show_default=True, help="Channels to list.")
@click.option("--full", is_flag=True, help="With --json: include scores and delta_s of every channel.")
def direction(opts, prompt, neutral, beta, top_k, show, full, as_json):
    """The global direction of PROMPT: channels moved and the strongest of them."""
    atlas = open_atlas(opts)
    requested = parse_beta(beta)
    d = atlas.direction(prompt, neutral, requested, top_k=top_k)
    obj = direction_report(atlas, d, show, full)
    emit(as_json, obj, lambda: _direction_lines(d, show, requested))


def beta_text(d, requested) -> str:
    """'beta 0.15', or for auto what it chose: 'beta auto -> 0.10 (18 channels, fewer than the 20 auto aims for)'."""
    from query.direction import AUTO_MIN_CHANNELS

    if not (isinstance(requested, str) and requested == "auto") or d.beta is None:
        return f"beta {d.beta}"
    short = f", fewer than the {AUTO_MIN_CHANNELS} auto aims for" if d.num_c <= AUTO_MIN_CHANNELS else ""
    return f"beta auto -> {d.beta:.2f} ({d.num_c} channels{short})"


def _direction_lines(d, show, requested=None):
    yield f"{d.prompt!r} (neutral {d.neutral!r}): {d.num_c} channels, {beta_text(d, requested)}"
    for o in d.overlaps:
        yield (
            f"  overlap {o['a']!r} / {o['b']!r}: {o['shared']} shared channels ({o['same_sign']} same sign, "
            f"{o['opposite_sign']} opposite), Jaccard {o['jaccard']:.2f}"
        )
    for layer, channel, score in d.top(show):
        yield f"  layer {layer:3d} channel {channel:5d} score {score:+.4f}"


@atlas_command(cli)
@click.argument("prompt")
@with_direction_options
@click.option("-n", "--show", type=int, default=20, show_default=True, help="Channels to list.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save a per-layer bar chart of the channels moved (PNG).",
)
def channels(opts, prompt, neutral, beta, top_k, show, plot, as_json):
    """The channels PROMPT moves: layer, resolution, channel, score, consistency, labels."""
    atlas = open_atlas(opts)
    requested = parse_beta(beta)
    d = atlas.direction(prompt, neutral, requested, top_k=top_k)
    obj = channels_report(atlas, d, show)
    rows = obj["channels"]
    if plot is not None:
        from query.media import plot_layers

        plot_layers(plot, atlas, d)
    obj["plot"] = str(plot) if plot else None

    def lines():
        yield f"{d.prompt!r} (neutral {d.neutral!r}): {d.num_c} channels, {beta_text(d, requested)}"
        yield f"{'layer':>5} {'res':>5} {'channel':>7} {'score':>8} {'consist':>7}  labels"
        for r in rows:
            labels = ", ".join(f"{p} ({s:+.2f})" for p, s in r["labels"])
            yield (
                f"{r['layer']:5d} {r['resolution']:5d} {r['channel']:7d} {r['score']:+8.4f} {r['consistency']:7.3f}  "
                f"{labels}"
            )
        if plot is not None:
            yield f"plot: {plot}"

    emit(as_json, obj, lines)


@atlas_command(cli, "channel")
@click.argument("layer", type=int)
@click.argument("channel_index", metavar="CHANNEL", type=int)
@click.option(
    "-k",
    type=int,
    default=default_of(Atlas.channel_words, "k"),
    show_default=True,
    help="Vocabulary phrases to list.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save a PNG grid of the channel's effect (-alpha..+alpha on 4 seeds).",
)
@click.option("--alpha", type=float, default=GridConfig.alpha, show_default=True, help="Largest |alpha| in the grid.")
@click.option("--steps", type=int, default=GridConfig.steps, show_default=True, help="Columns from -alpha to +alpha.")
@seed_option(GridConfig.seeds, "Seed of a grid row (repeatable).")
@click.option("--seeds", "old_seeds", default=None, hidden=True, help="Deprecated: comma-separated seeds; use --seed.")
@click.option("--psi", type=float, default=GridConfig.psi, show_default=True, help="Truncation.")
@click.option("--cell", type=int, default=GridConfig.cell, show_default=True, help="Grid cell size in pixels.")
@click.option(
    "--save-frames",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write every image of the grid at full resolution into this folder.",
)
def channel_cmd(opts, layer, channel_index, k, out, alpha, steps, seed, old_seeds, psi, cell, save_frames, as_json):
    """What one channel does: its best vocabulary words, and with -o a grid of its effect."""
    from query.media import MAX_CELL, MAX_SEEDS, MAX_STEPS, check_count

    check_count(k, "-k", 1, 100_000)
    seeds = list(seed)
    if old_seeds is not None:  # the old spelling, kept for scripts that use it
        if click.get_current_context().get_parameter_source("seed") is not ParameterSource.DEFAULT:
            raise AtlasError("pass --seed (repeatable), not both --seed and --seeds.")
        seeds = _ints(old_seeds)
        click.echo("warning: --seeds is deprecated; repeat --seed instead (--seed 0 --seed 1 ...).", err=True)
    if out is not None:
        check_count(steps, "--steps", 2, MAX_STEPS)
        check_count(cell, "--cell", 8, MAX_CELL)
        if len(seeds) > MAX_SEEDS:
            raise AtlasError(f"give at most {MAX_SEEDS} seeds.")
    atlas = open_atlas(opts)
    obj = info = channel_report(atlas, layer, channel_index, k)
    words = [(w["phrase"], w["score"]) for w in obj["words"]]
    if out is not None:
        from query.edit import channel_grid  # torch and the generator: only for the grid

        obj["grid"] = channel_grid(
            atlas,
            layer,
            channel_index,
            out,
            alpha=alpha,
            steps=steps,
            seeds=seeds,
            psi=psi,
            cell=cell,
            frames=save_frames,
        )

    def lines():
        yield (
            f"layer {info['layer']} ({info['resolution']} px) channel {info['channel']}: consistency "
            f"{info['consistency']:.3f}, std {info['style_std']:.4f}"
        )
        for p, s in words:
            yield f"  {s:+.4f}  {p}"
        if out is not None:
            yield f"grid: {out} (rows: seeds {','.join(map(str, seeds))}; columns: alpha {obj['grid']['alphas']})"

    emit(as_json, obj, lines)


def _ints(text: str) -> list[int]:
    from models.device import check_seed

    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise AtlasError(f"seeds must be comma-separated integers, got {text!r}.") from None
    if not values:
        raise AtlasError("give at least one seed.")
    return [check_seed(v) for v in values]


@atlas_command(cli)
@click.argument("prompt")
@click.option("-k", type=int, default=default_of(Atlas.similar, "k"), show_default=True, help="Phrases to list.")
def similar(opts, prompt, k, as_json):
    """The vocabulary phrases nearest to PROMPT in CLIP text space (FAISS vocab index)."""
    from query.media import check_count

    check_count(k, "-k", 1, 100_000)
    atlas = open_atlas(opts)
    found = atlas.similar(prompt, k)
    emit(
        as_json,
        dict(prompt=prompt, similar=[dict(phrase=p, cosine=s) for p, s in found]),
        [f"{s:+.4f}  {p}" for p, s in found],
    )


@atlas_command(cli)
@click.argument("query")
@click.option(
    "--limit",
    type=int,
    default=default_of(run_sql, "limit"),
    show_default=True,
    help="Rows to print at most (up to 100,000).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds before a running query is stopped.",
)
def sql(opts, query, limit, timeout_s, as_json):
    """Run one read-only SQL query over the atlas catalog (tables layers, channels, vocabulary, labels, builds)."""
    columns, rows = run_sql(opts["atlas"], query, limit, timeout_s)
    emit(
        as_json,
        dict(columns=columns, rows=[dict(zip(columns, r)) for r in rows]),
        lambda: ["\t".join(columns)] + ["\t".join("" if v is None else str(v) for v in r) for r in rows],
    )


@atlas_command(cli)
@click.argument("prompt")
@with_direction_options
@click.option(
    "--alpha",
    multiple=True,
    default=(f"{default_of(Atlas.edit_text, 'alpha'):g}",),
    show_default=True,
    help="Edit strength(s): 4, -4,4 or start:stop:count; repeatable.",
)
@seed_option()
@click.option(
    "--latent",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="W or W+ codes (.npy or .pt) instead of seeds.",
)
@click.option("--psi", type=float, default=DEFAULT_PSI, show_default=True, help="Truncation of seeded latents.")
@click.option(
    "--noise-mode", type=click.Choice(["const", "none", "random"]), default=StripConfig.noise_mode, show_default=True
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("edit.png"),
    show_default=True,
    help="PNG strip: original, then one column per alpha.",
)
@click.option("--cell", type=int, default=StripConfig.cell, show_default=True, help="Cell size in pixels.")
@click.option(
    "--save-frames",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write every image at full resolution into this folder (seed3_alpha+4.png ...).",
)
@click.option(
    "--save-latents",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the edited style codes S (one [B, alphas, width] array per layer) to .pt or .npz.",
)
@click.option(
    "--image",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image file(s) to invert first (their W+ is written beside -o as .latents.npy).",
)
@with_image_options
@click.option(
    "--method",
    type=click.Choice(["auto", "global", "mapper", "optimize"]),
    default=None,
    help="Edit with edit_text: auto picks global, a stored mapper or optimization (prints which and why).",
)
def edit(
    opts,
    prompt,
    neutral,
    beta,
    top_k,
    alpha,
    seed,
    latent,
    psi,
    noise_mode,
    out,
    cell,
    save_frames,
    save_latents,
    image,
    encoder,
    invert_steps,
    identity,
    as_json,
    method,
):
    """Edit sampled (--seed), given (--latent) or inverted (--image) images along PROMPT's direction; PNG strip."""
    from query.edit import edit_strip
    from query.media import MAX_CELL, MAX_SEEDS, check_count, parse_alphas, png_path

    alphas = parse_alphas(alpha)
    beta = parse_beta(beta)
    if latent is not None and seed:
        raise AtlasError("pass --seed or --latent, not both.")
    if len(seed) > MAX_SEEDS:
        raise AtlasError(f"give at most {MAX_SEEDS} seeds.")
    check_count(cell, "--cell", 8, MAX_CELL)
    inverted = {}
    if image:
        if latent is not None or seed:
            raise AtlasError("pass one of --seed, --latent or --image.")
        png_path(out)
        latent, inverted = edit_image_latents(opts, image, encoder, invert_steps, identity, out)
    atlas = open_atlas(opts)
    if method is not None:
        return _method_edit(
            atlas,
            opts,
            prompt,
            neutral,
            beta,
            alphas,
            seed,
            latent,
            psi,
            out,
            cell,
            as_json,
            method,
            identity,
            inverted,
        )
    d = atlas.direction(prompt, neutral, beta, top_k=top_k)
    obj = edit_strip(
        atlas,
        d,
        out,
        alphas,
        seeds=list(seed) or ([0] if latent is None else None),
        latent=latent,
        psi=psi,
        noise_mode=noise_mode,
        cell=cell,
        frames=save_frames,
        latents=save_latents,
    )
    obj.update(inverted)
    emit(
        as_json,
        obj,
        [
            f"{d.prompt!r} (neutral {d.neutral!r}): {d.num_c} channels, {beta_text(d, beta)}; alphas {alphas}",
            f"wrote {out}",
        ],
    )


@atlas_command(cli)
@click.argument("prompts_file", type=click.Path(dir_okay=False, path_type=Path))
@with_direction_options
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="library.h5, .npz or .pt (a .manifest.json is written beside it).",
)
@click.option("--styleclip-layout", is_flag=True, help="Also write one [N, width] array per style layer.")
def export(opts, prompts_file, neutral, beta, top_k, out, styleclip_layout, as_json):
    """Directions for every prompt in PROMPTS_FILE (one a line), computed in one batch, to one file."""
    from query.export import export_library, manifest_path
    from query.prompts import read_prompts

    prompts = read_prompts(prompts_file)
    beta = parse_beta(beta)
    atlas = open_atlas(opts)
    manifest = export_library(atlas, prompts, out, neutral, beta, top_k, styleclip_layout)
    short = {k: v for k, v in manifest.items() if k != "prompts"}
    short["manifest"] = str(manifest_path(out))
    emit(
        as_json,
        short,
        lambda: (
            [
                f"wrote {out}: {manifest['num_prompts']} directions x {manifest['num_channels']} channels "
                f"({manifest['directions_per_second']:,.1f} directions/s)",
                f"manifest {short['manifest']}",
            ]
            + [f"  no direction for {p['prompt']!r}: {p['reason']}" for p in manifest["problems"][:10]]
        ),
    )


# ---- fallbacks and real images (SPEC §6, §9): invert, optimize, edit --image -------------------------------
def fallback_models(opts: dict, identity: str | None = None, encoder=None, need_clip: bool = True) -> dict:
    """Generator, CLIP, identity and encoder for the fallback commands; the atlas only names the default models.

    Without --generator / --clip the atlas's recorded models are used when --atlas holds one, else "demo".
    The identity defaults to the demo identity with the demo generator, to none otherwise ("none" turns it off).
    """
    from models.clip import load_clip
    from models.device import resolve_device
    from models.stylegan2 import load_generator

    names = dict(generator=opts["generator"], clip=opts["clip"])
    if None in names.values() and (Path(opts["atlas"]) / "atlas.h5").exists():
        atlas = open_atlas(opts)
        names = {k: v or recorded(atlas, k) for k, v in names.items()}
    names = {k: v or "demo" for k, v in names.items()}
    device = resolve_device(opts["device"])  # "auto" (the default since issue 9) -> cuda or cpu
    out = dict(names=names, generator=load_generator(names["generator"], device=device))
    out["embedder"] = load_clip(names["clip"], opts["pretrained"], device=device) if need_clip else None
    if identity is None:
        identity = "demo" if names["generator"] == "demo" else "none"
    out["identity_name"] = identity
    out["identity"] = None
    if identity != "none":
        from models.identity import load_identity

        out["identity"] = load_identity(identity, device=device)
    out["encoder"] = None
    if encoder is not None:
        from models.encoder import load_encoder

        out["encoder"] = load_encoder(encoder, device=device)
    return out


def _latents_path(path) -> Path:
    path = Path(path).expanduser()
    if path.suffix not in (".npy", ".pt"):
        raise AtlasError(f"{path.name}: latents are written as .npy or .pt, e.g. -o latents.npy.")
    return path


def _save_latents(path: Path, ws) -> Path:
    import numpy as np

    from models.files import atomic_path

    path = _latents_path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if path.suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, ws.detach().cpu().numpy())
        else:
            import torch

            torch.save(ws.detach().cpu(), tmp)
    return path


def invert_images(models: dict, images, steps: int, seed: int = 0, progress: bool = True):
    """Read image files at the generator's resolution and invert them -> (W+, details)."""
    from query.images import read_images
    from query.inversion import invert

    gen = models["generator"]
    target = read_images(images, int(gen.resolution))
    return target, *invert(
        gen,
        target,
        steps=steps,
        embedder=models["embedder"],
        identity=models["identity"],
        encoder=models["encoder"],
        seed=seed,
        progress=progress,
        return_details=True,
    )


@atlas_command(cli, "invert")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Latents file (.npy or .pt): W+ [B, num_ws, w_dim].",
)
@with_image_options
@click.option(
    "--seed",
    type=int,
    default=InvertConfig.seed,
    show_default=True,
    help="Seed of the latent exploration noise (one number, not an image seed).",
)
def invert_cmd(opts, images, out, encoder, invert_steps, identity, seed, as_json):
    """Project IMAGES (PNG/JPEG; centre-cropped, resized) into W+ latents; report reconstruction PSNR."""
    _latents_path(out)  # before any work
    models = fallback_models(opts, identity, encoder)
    _, ws, details = invert_images(models, images, invert_steps, seed)
    _save_latents(out, ws)
    obj = dict(
        out=str(out),
        shape=list(ws.shape),
        images=[str(p) for p in images],
        psnr=details["psnr"],
        steps=invert_steps,
        start=details["start"],
        models=models["names"],
        identity=models["identity_name"],
    )
    emit(as_json, obj, [f"{p}: PSNR {v:.2f} dB" for p, v in zip(images, details["psnr"])] + [f"wrote {out}"])


def _optimize_option(field: str, kind, help: str):
    """A click option --<field> of `query.py optimize` whose default is OptimizeConfig's."""
    return click.option(
        "--" + field.replace("_", "-"), type=kind, default=getattr(OptimizeConfig, field), show_default=True, help=help
    )


@atlas_command(cli, "optimize")
@click.argument("prompt")
@seed_option()
@click.option(
    "--latent",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="W or W+ codes (.npy or .pt) instead of seeds.",
)
@click.option(
    "--image",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image file(s) to invert first, then edit (repeatable).",
)
@click.option("--psi", type=float, default=DEFAULT_PSI, show_default=True, help="Truncation of seeded latents.")
@click.option("--steps", type=int, default=OptimizeConfig.steps, show_default=True)
@click.option("--lr", type=float, default=OptimizeConfig.lr, show_default=True)
@click.option("--l2-lambda", type=float, default=OptimizeConfig.l2_lambda, show_default=True)
@click.option("--id-lambda", type=float, default=OptimizeConfig.id_lambda, show_default=True)
@click.option(
    "--preprocess",
    type=click.Choice(["pool", "clip", "reference"]),
    default=OptimizeConfig.preprocess,
    show_default=True,
    help="CLIP input: average-pooled (SPEC §6), CLIP's resize+crop, or StyleCLIP's raw [-1,1] input.",
)
@click.option(
    "--l2-norm",
    type=click.Choice(["generator", "reference"]),
    default=OptimizeConfig.l2_norm,
    show_default=True,
    help="L2 term in units of the generator's W variance (query/losses.py l2_scale) or StyleCLIP's raw sum.",
)
@_optimize_option(
    "augment",
    click.IntRange(min=0),
    "Randomly warped views averaged in the CLIP loss per step (0 = StyleCLIP's single view).",
)
@_optimize_option(
    "latent_noise",
    click.FloatRange(min=0),
    "Exploration noise on the latent, in W stds, fading out over the first 75 % of the steps (0 = off).",
)
@_optimize_option(
    "spread_lambda",
    click.FloatRange(min=0),
    "Weight of the W+ spread term: how far the edit pulls the layers' w apart (query/losses.py; 0 = off).",
)
@with_image_options
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("optimize.png"),
    show_default=True,
    help="PNG strip: original, edited (with --image: the photo first).",
)
@click.option(
    "--save-latent",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the edited W+ latents (.npy or .pt).",
)
@click.option("--cell", type=int, default=128, show_default=True, help="Cell size in pixels.")
def optimize_cmd(
    opts,
    prompt,
    seed,
    latent,
    image,
    psi,
    steps,
    lr,
    l2_lambda,
    id_lambda,
    preprocess,
    l2_norm,
    augment,
    latent_noise,
    spread_lambda,
    encoder,
    invert_steps,
    identity,
    out,
    save_latent,
    cell,
    as_json,
):
    """Edit toward PROMPT by latent optimisation (StyleCLIP's optimizer, SPEC §6): slow, but any edit CLIP names."""
    import torch

    from query.media import image_grid, load_latent, png_path, save_png
    from query.optimization import optimize

    png_path(out)
    if save_latent is not None:
        _latents_path(save_latent)
    if sum(bool(x) for x in (seed, latent, image)) > 1:
        raise AtlasError("pass one of --seed, --latent or --image.")
    models = fallback_models(opts, identity, encoder)
    gen = models["generator"]
    photos, source = None, {}
    if image:
        photos, ws, details = invert_images(models, image, invert_steps)
        source = dict(images=[str(p) for p in image], inversion_psnr=details["psnr"])
    elif latent is not None:
        ws = load_latent(latent, int(gen.w_dim), int(gen.num_ws))
        source = dict(latent=str(latent))
    else:
        from models.seeds import seed_ws

        seeds = list(seed) or [0]
        ws = seed_ws(gen, seeds, psi)  # [B, w_dim]: the images `--seed` means everywhere
        source = dict(seeds=seeds, psi=psi)
    edited, curves = optimize(
        gen,
        models["embedder"],
        ws,
        prompt,
        steps=steps,
        lr=lr,
        l2_lambda=l2_lambda,
        id_lambda=id_lambda,
        identity=models["identity"],
        preprocess=preprocess,
        l2_norm=l2_norm,
        augment=augment,
        latent_noise=latent_noise,
        spread_lambda=spread_lambda,
        return_curves=True,
    )
    with torch.no_grad():
        before = gen.synthesize(gen.styles(gen.broadcast(ws.to(gen.mean_w.device))))
        after = gen.synthesize(gen.styles(edited))
    rows = [
        torch.stack(([photos[b].to(before.device)] if photos is not None else []) + [before[b], after[b]])
        for b in range(len(after))
    ]
    settings = dict(
        prompt=prompt,
        models=models["names"],
        identity=models["identity_name"],
        identity_used=curves["identity_used"],
        config=curves["config"],
        **source,
    )
    save_png(out, image_grid(rows, cell), settings)
    if save_latent is not None:
        _save_latents(save_latent, edited)
    obj = dict(
        settings,
        out=str(out),
        save_latent=str(save_latent) if save_latent else None,
        loss_first=curves["loss"][0],
        loss_last=curves["loss"][-1],
        clip_first=curves["clip"][0],
        clip_last=curves["clip"][-1],
        curves={k: curves[k] for k in ("loss", "clip", "l2", "identity", "lr")},
    )
    emit(
        as_json,
        obj,
        [
            f"{prompt!r}: CLIP loss {curves['clip'][0]:.4f} -> {curves['clip'][-1]:.4f} in {steps} "
            f"steps (identity {'on' if curves['identity_used'] else 'off'})",
            f"wrote {out}",
        ],
    )


def edit_image_latents(opts: dict, image, encoder, invert_steps: int, identity, out: Path) -> tuple[Path, dict]:
    """`edit --image`: invert the photos and write their W+ beside the strip (<out>.latents.npy) for reuse."""
    models = fallback_models(opts, identity, encoder, need_clip=True)
    _, ws, details = invert_images(models, image, invert_steps)
    path = _save_latents(Path(out).with_suffix(".latents.npy"), ws)
    return path, dict(images=[str(p) for p in image], inversion_psnr=details["psnr"], latents=str(path))


# ---------------------------------------------------------------- fallbacks: mappers, edit --method, compare
def _latents(atlas, seed, latent, psi) -> tuple:
    """W codes from --seed (default 0) or --latent, and how they were chosen (for the PNG's settings)."""
    from query.media import MAX_SEEDS, load_latent

    if len(seed) > MAX_SEEDS:
        raise AtlasError(f"give at most {MAX_SEEDS} seeds.")
    gen = atlas.generator
    if latent is not None:
        ws = load_latent(latent, int(gen.w_dim), int(gen.num_ws))
        return ws, dict(latent=str(latent), latent_shape=list(ws.shape))
    seeds = list(seed) or [0]
    return atlas.sample_ws(seeds, psi), dict(seeds=seeds, psi=psi)


def _identity(name, atlas=None, opts=None):
    """--identity: a file, "demo" or "none"; unset: the demo identity with the demo generator (as fallback_models
    does for optimize), else none. Without atlas/opts (mapper train) unset means none."""
    if name is None and atlas is not None:
        generator = opts["generator"] or from_atlas(atlas, "generator", "--generator")
        name = "demo" if generator == "demo" else "none"
    if name in (None, "", "none"):
        return None
    from models.device import resolve_device
    from models.identity import load_identity

    return load_identity(name, device=resolve_device(opts["device"]) if opts else "cpu")


def _method_edit(
    atlas,
    opts,
    prompt,
    neutral,
    beta,
    alphas,
    seed,
    latent,
    psi,
    out,
    cell,
    as_json,
    method,
    identity=None,
    inverted=None,
):
    """`edit --method`: edit_text on the seeds / latents / inverted images; prints the method and why."""
    from query.compare import method_strip

    if len(alphas) != 1:
        raise AtlasError("--method edits at one strength; give one --alpha (the global direction's).")
    ws, source = _latents(atlas, seed, latent, psi)
    identity = _identity(identity, atlas, opts) if method in ("auto", "optimize") else None
    obj = method_strip(
        atlas,
        ws,
        prompt,
        out,
        method=method,
        neutral=neutral,
        alpha=alphas[0],
        beta=beta,
        cell=cell,
        source=source,
        identity=identity,
        progress=not as_json,
    )
    obj.update(inverted or {})
    emit(as_json, obj, [f"method: {obj['method']}", f"reason: {obj['reason']}", f"wrote {out}"])


@cli.group("mapper")
def mapper_group():
    """Latent mappers (SPEC §7): train one per prompt into the atlas, list them."""


@atlas_command(mapper_group, "train")
@click.argument("prompt")
@click.option("--steps", type=int, default=MapperTrainConfig.steps, show_default=True, help="Training steps.")
@click.option("--batch-size", type=int, default=MapperTrainConfig.batch_size, show_default=True)
@click.option(
    "--latents",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Training W / W+ codes (.npy or .pt, e.g. e4e inversions) instead of sampled ones.",
)
@click.option(
    "--psi", type=float, default=MapperTrainConfig.psi, show_default=True, help="Truncation of sampled training codes."
)
@click.option("--lr", type=float, default=MapperTrainConfig.lr, show_default=True, help="Adam learning rate.")
@click.option("--l2-lambda", type=float, default=MapperTrainConfig.l2_lambda, show_default=True)
@click.option("--id-lambda", type=float, default=MapperTrainConfig.id_lambda, show_default=True)
@click.option("--identity", default=None, help='Identity model: model_ir_se50.pth, "demo" or none (default).')
@click.option(
    "--levels", default=",".join(MapperTrainConfig.levels), show_default=True, help="W+ levels the mapper moves."
)
@click.option(
    "--seed",
    type=int,
    default=MapperTrainConfig.seed,
    show_default=True,
    help="Seed of the training set and batch order (one number, not an image seed).",
)
def mapper_train(
    opts, prompt, steps, batch_size, latents, psi, lr, l2_lambda, id_lambda, identity, levels, seed, as_json
):
    """Train a mapper for PROMPT with the atlas's models and store it in the atlas (resumes if interrupted)."""
    from query.mapper_store import train_atlas_mapper

    atlas = open_atlas(opts)
    with resumable():
        record = train_atlas_mapper(
            atlas,
            prompt,
            identity=_identity(identity),
            progress=not as_json,
            steps=steps,
            batch_size=batch_size,
            ws=latents,
            psi=psi,
            lr=lr,
            l2_lambda=l2_lambda,
            id_lambda=id_lambda,
            seed=seed,
            levels=tuple(l.strip() for l in levels.split(",") if l.strip()),
        )
    emit(
        as_json,
        record,
        [
            f"mapper for {record['prompt']!r}: {record['file']} ({record['steps']} steps, batch "
            f"{record['batch_size']}; final CLIP loss {record['loss_clip']:.4f}, L2 "
            f"{record['loss_l2']:.5f}; {record['settings'].get('seconds', 0):.0f} s)"
        ],
    )


@atlas_command(mapper_group, "list")
def mapper_list(opts, as_json):
    """The mappers stored in the atlas."""
    from index.mappers import list_mappers

    records = list_mappers(opts["atlas"])
    emit(
        as_json,
        dict(mappers=records),
        lambda: (
            [
                f"{r['prompt']!r}: {r['file']}, {r['steps']} steps x "
                f"{r['batch_size']}, CLIP loss {r['loss_clip']:.4f}, {r['created']}"
                for r in records
            ]
            or ["no mappers in this atlas"]
        ),
    )


@atlas_command(cli, "compare")
@click.argument("prompt")
@seed_option()
@click.option(
    "--latent",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="W or W+ codes (.npy or .pt) instead of seeds.",
)
@click.option("--psi", type=float, default=DEFAULT_PSI, show_default=True, help="Truncation of seeded latents.")
@with_direction_options
@click.option(
    "--alpha",
    type=float,
    default=default_of(Atlas.edit_text, "alpha"),
    show_default=True,
    help="Global direction strength.",
)
@click.option(
    "--methods",
    default="global,mapper,optimize",
    show_default=True,
    help="Methods to compare (mapper only when one is stored).",
)
@click.option(
    "--identity",
    default=None,
    help='Identity for optimization: model_ir_se50.pth, "demo" or none '
    "(default: demo with the demo generator, else none).",
)
@click.option("--optimize-steps", type=int, default=OptimizeConfig.steps, show_default=True)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("compare.png"),
    show_default=True,
    help="PNG grid: rows are images; columns original, then each method.",
)
@click.option("--cell", type=int, default=96, show_default=True)
def compare_cmd(
    opts, prompt, seed, latent, psi, neutral, beta, top_k, alpha, methods, identity, optimize_steps, out, cell, as_json
):
    """Global direction vs mapper vs optimization on the same images: a PNG grid and a table per method."""
    from query.compare import compare_methods, parse_methods, table_lines
    from query.media import MAX_CELL, check_count

    if latent is not None and seed:
        raise AtlasError("pass --seed or --latent, not both.")
    check_count(cell, "--cell", 8, MAX_CELL)
    methods = parse_methods(methods)
    atlas = open_atlas(opts)
    ws, source = _latents(atlas, seed, latent, psi)
    report = compare_methods(
        atlas,
        ws,
        prompt,
        out,
        neutral=neutral,
        alpha=alpha,
        beta=parse_beta(beta),
        identity=_identity(identity, atlas, opts) if "optimize" in methods else None,
        optimize_options=dict(steps=optimize_steps),
        methods=methods,
        cell=cell,
        source=source,
        progress=not as_json,
    )
    emit(as_json, report, lambda: table_lines(report))


def main(args=None):
    run_cli(cli, args)


if __name__ == "__main__":
    main()
