"""`build_index.py` / `styleatlas-build`: a thin click layer over pipeline.build_atlas and pipeline.merge."""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.core import ParameterSource

from models.cli import device_option, emit, json_option, print_warnings, resumable, run_cli
from pipeline.config import RelevanceConfig, StatsConfig, VocabularyConfig


def _load_models(generator: str, clip: str, pretrained: str | None, device: str, random_weights: bool = False):
    from models.clip import load_clip
    from models.stylegan2 import load_generator

    gen = load_generator(generator, device=device)
    embedder = load_clip(clip, pretrained, device=device, random_weights=random_weights)
    if _is_rank0():
        click.echo(f"generator: {gen.source}; CLIP {clip}: {describe_weights(embedder)}", err=True)
    return gen, embedder


def describe_weights(embedder) -> str:
    """Which weights a loaded CLIP holds, in words (printed so that nobody builds on the wrong ones unknowingly)."""
    source = getattr(embedder, "source", None) or {}
    if source.get("clip") == "demo" and source.get("pretrained") is None:
        return "the demo weights"
    pretrained = source.get("pretrained")
    return f"weights {pretrained}" if pretrained else "RANDOM weights (--random-weights)"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def print_plan(report) -> None:
    plan = report.plan
    cfg = plan["config"]
    click.echo(f"plan for {report.path}")
    click.echo(
        f"  generator {plan['generator_fingerprint'][:16]}…  CLIP {plan['embedder_fingerprint'][:16]}…  "
        f"dim {plan['dim']}  neutral {plan['neutral']!r}"
    )
    click.echo(
        f"  style statistics: {cfg['stats']['num_samples']:,} samples (psi {cfg['stats']['psi']}, seed "
        f"{cfg['stats']['seed']}) in {plan['chunks']['stats']} chunks"
    )
    click.echo("  layers in the atlas (index kind resolution width):")
    for l in plan["layers"]:
        if l["in_atlas"]:
            click.echo(f"    {l['index']:3d} {l['kind']:5s} {l['resolution']:5d} {l['width']:5d}")
    r = cfg["relevance"]
    click.echo(
        f"  relevance: {report.channels:,} channels x {r['num_images']} images x 2 = "
        f"{report.renders_planned:,} renders (alpha {r['alpha']}, batch {r['batch_size']}) in "
        f"{plan['chunks']['relevance']} chunks"
    )
    print_relevance_plan(report.relevance_plan)
    click.echo(
        f"  vocabulary: {len(plan['phrases']):,} phrases x {len(plan['templates'])} templates = "
        f"{len(plan['phrases']) * len(plan['templates']):,} text encodes in {plan['chunks']['vocabulary']} "
        f"chunks; labels top-{cfg['labels']['k']}"
    )
    est = getattr(report, "estimate", None)
    if est:
        from pipeline.common import duration

        click.echo(f"  {report.path}: {est['state_text']}")
        unit = est.get("units") or dict(stats="samples", relevance="renders", vocabulary="texts")
        for stage, (done, planned) in est["done"].items():
            click.echo(
                f"    {stage}: {done:,} of {planned:,} {unit[stage]} done, about {duration(est['seconds'][stage])} left"
            )
        click.echo(f"  estimated time: about {duration(est['seconds']['total'])} ({est['basis']})")


def print_relevance_plan(cost: dict) -> None:
    """The relevance method's work, and for jacobian the probe's memory and time estimate."""
    if not cost:
        return
    click.echo(
        f"  relevance method {cost['method']}: exact needs {cost['exact_renders']:,} renders, jacobian "
        f"{cost['jacobian_forward_equivalents']:,} forward-equivalents ({cost['ratio']:.1f}x fewer; "
        f"{cost['check_channels']} channels also measured exactly as a check)"
    )
    if "memory_estimate_bytes" in cost:
        click.echo(
            f"    jacobian memory ~{_mib(cost['memory_estimate_bytes'])} (graph {_mib(cost['graph_bytes_per_image'])}"
            f" per image); time <= ~{cost['time_estimate_seconds']:,.0f} s on this device (one-image probe: "
            f"forward {cost['probe_forward_seconds']:.3f} s, backward {cost['probe_backward_seconds']:.3f} s)"
        )


def print_summary(report) -> None:
    click.echo(f"{report.status}: {report.path}")
    workers = f"workers {report.workers}" if report.workers else "merged from the work folder (shards' own counts)"
    click.echo(f"  channels {report.channels:,} in {report.layers} layers; vocabulary {report.vocabulary:,}; {workers}")
    done, planned = "images rendered this run", report.renders_planned
    if (report.relevance_plan or {}).get("method") == "jacobian":
        done, planned = "forward-equivalents (jacobian) this run", report.relevance_plan["jacobian_forward_equivalents"]
    click.echo(
        f"  {done} {report.images_rendered:,} of {planned:,} planned; "
        f"texts encoded {report.texts_encoded:,}; samples mapped {report.samples_mapped:,}"
    )
    if report.seconds:
        click.echo("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items()))
    if report.atlas_bytes:
        click.echo(f"  atlas size {_mib(report.atlas_bytes)}")
    if report.status == "shard done":
        click.echo(f"  when every shard is done: styleatlas-build merge --out {report.path}")


def _emit(report, as_json: bool, dry_run: bool = False) -> None:
    if as_json:
        emit(True, report.to_dict())
    elif dry_run:
        print_plan(report)
    else:
        print_summary(report)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--generator", default="demo", show_default=True, help='StyleGAN2 checkpoint path, or "demo".')
@click.option(
    "--clip", default="demo", show_default=True, help='open_clip model name, JSON model config path, or "demo".'
)
@click.option("--pretrained", default=None, help="open_clip pretrained tag or local checkpoint path.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("atlas"),
    show_default=True,
    help="Atlas folder (created; a partial build there is resumed).",
)
@click.option(
    "--num-images", type=int, default=RelevanceConfig.num_images, show_default=True, help="Images per channel (M)."
)
@click.option(
    "--alpha", type=float, default=RelevanceConfig.alpha, show_default=True, help="Perturbation in channel stds."
)
@click.option("--psi", type=float, default=StatsConfig.psi, show_default=True, help="Truncation of sampled latents.")
@click.option(
    "--seed",
    type=int,
    default=StatsConfig.seed,
    show_default=True,
    help="Seed of the build's sample streams (statistics, relevance images); one number, not an image seed.",
)
@click.option(
    "--batch-size", type=int, default=RelevanceConfig.batch_size, show_default=True, help="Renders per generator call."
)
@device_option()
@click.option("--layers", default=None, help="Comma-separated style-layer indices (default: every conv layer).")
@click.option(
    "--num-samples",
    type=int,
    default=StatsConfig.num_samples,
    show_default=True,
    help="Samples for style statistics.",
)
@click.option(
    "--vocabulary",
    multiple=True,
    help="demo, english, faces, default, or a phrase file (one a line); repeatable. Default: "
    + ", ".join(VocabularyConfig.vocabulary)
    + ".",
)
@click.option(
    "--templates",
    type=click.Path(dir_okay=False),
    default=None,
    help="Template file ('{}' = phrase); default the 79 ImageNet templates.",
)
@click.option(
    "--neutral",
    default=None,
    help="The class word of the images, e.g. face, car, church (required except for the demo: shape).",
)
@click.option("--include-torgb", is_flag=True, help="Also measure the toRGB layers.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default=RelevanceConfig.precision,
    show_default=True,
    help="Arithmetic of render + CLIP encode (bf16/fp16 autocast: faster on GPUs, not the reference's).",
)
@click.option(
    "--english-size",
    type=int,
    default=VocabularyConfig.english_size,
    show_default=True,
    help="Cap on the English word list.",
)
@click.option("--shard", default=None, help="i/n: compute only this job's share into the work folder.")
@click.option("--keep-work", is_flag=True, help="Keep the work/ folder after assembling.")
@click.option("--dry-run", is_flag=True, help="Print the plan and the renders it needs; compute nothing.")
@json_option()
@click.option("--random-weights", is_flag=True, help="Allow a CLIP without --pretrained weights (random; tests only).")
@click.option(
    "--relevance-method",
    type=click.Choice(["exact", "jacobian"]),
    default=RelevanceConfig.method,
    show_default=True,
    help="exact: SPEC §3 renders; jacobian: SPEC §3b, every channel from one backward per CLIP dim.",
)
@click.option(
    "--chunk-images",
    type=int,
    default=RelevanceConfig.chunk_images,
    show_default=True,
    help="jacobian: images per work chunk.",
)
@click.option(
    "--vjp-batch",
    type=int,
    default=RelevanceConfig.vjp_batch,
    show_default=True,
    help="jacobian: cotangents per batched backward (memory grows with it).",
)
@click.option(
    "--clip-resolution-exit",
    type=int,
    default=None,
    help="exact: encode channels at <= this resolution from its skip image (e.g. 256).",
)
@click.pass_context
def cli(
    ctx,
    generator,
    clip,
    pretrained,
    out,
    num_images,
    alpha,
    psi,
    seed,
    batch_size,
    device,
    layers,
    num_samples,
    vocabulary,
    templates,
    neutral,
    include_torgb,
    precision,
    english_size,
    shard,
    keep_work,
    dry_run,
    as_json,
    random_weights,
    **relevance_options,
):
    """Build a StyleAtlas: style statistics, channel relevance, vocabulary, labels, indexes, catalog.

    Resumable (run the same command again), distributed under torchrun, shardable with --shard i/n
    followed by `styleatlas-build merge --out DIR`.
    """
    print_warnings(ctx)
    if ctx.invoked_subcommand is not None:
        refuse_ignored_options(ctx)
        ctx.obj = dict(out=out, as_json=as_json, keep_work=keep_work)
        return
    from models.device import resolve_device
    from pipeline.build import run_build
    from pipeline.config import check_inputs

    check_inputs(alpha=alpha, psi=psi, seed=seed, neutral=neutral)  # before minutes of model loading
    device = resolve_device(device)
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: each rank loads onto its own GPU
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    gen, embedder = _load_models(generator, clip, pretrained, device, random_weights)
    with resumable():
        report = run_build(
            gen,
            embedder,
            out,
            num_images=num_images,
            alpha=alpha,
            psi=psi,
            seed=seed,
            batch_size=batch_size,
            device=device,
            layers=layers,
            num_samples=num_samples,
            vocabulary=[Path(v) for v in vocabulary] or None,
            templates=templates,
            neutral=neutral,
            include_torgb=include_torgb,
            precision=precision,
            english_size=english_size,
            shard=shard,
            keep_work=keep_work,
            dry_run=dry_run,
            progress=not as_json,
            **relevance_options,
        )
    if _is_rank0():  # under torchrun, rank 0 speaks for all
        _emit(report, as_json, dry_run)


# the group's options each subcommand uses when given before its name; any other is refused, not ignored
SUBCOMMAND_OPTIONS = {"merge": ("out", "keep_work", "as_json"), "add-vocabulary": ("out", "as_json")}


def refuse_ignored_options(ctx) -> None:
    """`build_index.py --num-images 5 merge`: a UsageError naming the build options the subcommand would ignore."""
    allowed = SUBCOMMAND_OPTIONS.get(ctx.invoked_subcommand, ())
    given = [
        p.opts[0]
        for p in ctx.command.params
        if p.name not in allowed and ctx.get_parameter_source(p.name) not in (None, ParameterSource.DEFAULT)
    ]
    if given:
        what = "a build option; leave it" if len(given) == 1 else "build options; leave them"
        raise click.UsageError(f"{ctx.invoked_subcommand} does not use {', '.join(given)} ({what} out).")


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


@cli.command("merge")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Atlas folder whose shards finished (default: the group's --out).",
)
@click.option("--keep-work", is_flag=True, help="Keep the work/ folder after assembling.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def merge_cmd(obj, out, keep_work, as_json):
    """Assemble the atlas from the work folder of a sharded build (needs no models)."""
    from pipeline.build import merge

    obj = obj or {}
    as_json = as_json or obj.get("as_json", False)
    with resumable():
        report = merge(out or obj.get("out"), keep_work=keep_work or obj.get("keep_work", False), progress=not as_json)
    _emit(report, as_json)


@cli.command("add-vocabulary")
@click.argument("phrases_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The finished atlas to grow (default: the group's --out).",
)
@click.option(
    "--clip",
    default=None,
    help="The atlas's CLIP: open_clip model name, JSON config or demo (default: "
    "the one the atlas records, loaded from local files only).",
)
@click.option("--pretrained", default=None, help="open_clip pretrained tag or local checkpoint path.")
@click.option("--random-weights", is_flag=True, help="Allow a CLIP without --pretrained weights (tests only).")
@device_option()
@json_option()
@click.pass_obj
def add_vocabulary_cmd(obj, phrases_file, out, clip, pretrained, random_weights, device, as_json):
    """Embed the phrases of FILE (one a line) into a finished atlas: vocabulary, labels, index, catalog.

    Uses the atlas's own templates and neutral and refuses another CLIP; relevance is untouched. The atlas is
    replaced in one step at the end, so a crash leaves the old one as it was (run again to resume).
    """
    from index import read_atlas
    from models.clip import load_clip
    from models.device import resolve_device
    from pipeline.grow import add_vocabulary

    obj = obj or {}
    as_json = as_json or obj.get("as_json", False)
    out = out or obj.get("out")
    device = resolve_device(device)
    given = clip is not None or pretrained is not None
    if not given:  # the CLIP the atlas was built with, as it recorded it
        models = read_atlas(out).models or {}
        clip, pretrained = models.get("clip") or "demo", models.get("pretrained")
    embedder = load_clip(clip or "demo", pretrained, device=device, random_weights=random_weights, allow_download=given)
    if not as_json:
        click.echo(f"CLIP {clip or 'demo'}: {describe_weights(embedder)}", err=True)
    with resumable():
        report = add_vocabulary(out, embedder, Path(phrases_file), progress=not as_json, device=device)

    def lines():
        yield f"{report.status}: {report.path}"
        yield (
            f"  added {len(report.added):,} phrases ({report.already:,} already in the vocabulary); vocabulary "
            f"{report.vocabulary:,}; texts encoded {report.texts_encoded:,}"
        )
        if report.seconds:
            yield "  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.seconds.items())

    emit(as_json, report.to_dict(), lines)


def main(args=None):
    run_cli(cli, args)


if __name__ == "__main__":
    main()
