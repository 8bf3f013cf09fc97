"""`styleatlas-convert IN OUT` / `python -m models.convert`: any generator file StyleAtlas reads -> rosinality `.pt`.

Mainly for NVIDIA network pickles (read without running their code, models/nvidia.py), so that tools which
take rosinality checkpoints (StyleCLIP, e4e, ...) can use those models too.
"""

from __future__ import annotations

from pathlib import Path

import click

from models.cli import emit, json_option, print_warnings, run_cli
from models.errors import CheckpointError


def convert(src, dst) -> dict:
    """Read `src` (NVIDIA .pkl or rosinality .pt), write `dst` in rosinality format; what was written."""
    from models.checkpoint import resolve_generator_path
    from models.nvidia import is_network_pickle, read_nvidia_checkpoint
    from models.stylegan2 import generator_from_checkpoint, load_generator, save_generator

    src, dst = resolve_generator_path(src), Path(dst).expanduser()
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise CheckpointError(f"the output {dst} is the input file; choose another output path.")
    if dst.suffix.lower() == ".pkl":
        raise CheckpointError(
            f"the output {dst} ends in .pkl, which StyleAtlas reads as an NVIDIA pickle; name it .pt."
        )
    info = None
    if is_network_pickle(src):
        ckpt, info = read_nvidia_checkpoint(src)
        gen = generator_from_checkpoint(ckpt, src)
    else:
        gen = load_generator(src)
    save_generator(gen, dst)
    report = dict(
        input=str(src),
        output=str(dst),
        format="rosinality",
        resolution=gen.resolution,
        style_dim=gen.w_dim,
        n_mlp=gen.n_mlp,
        num_ws=gen.num_ws,
        style_layers=len(gen.style_dims),
        channels={str(k): v for k, v in gen.channels.items()},
        conv_clamp=gen.conv_clamp,
        fingerprint=gen.fingerprint(),
        bytes=dst.stat().st_size,
    )
    if info is not None:
        report["snapshot"] = info.to_dict()
    return report


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", type=click.Path(dir_okay=True, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@json_option()
@click.pass_context
def cli(ctx, src, dst, as_json):
    """Convert a generator (NVIDIA StyleGAN2-ADA .pkl, or rosinality .pt) into a rosinality-format .pt file.

    NVIDIA pickles are read with an allow-list unpickler: the code stored in them never runs. A generator
    trained with conv_clamp (ADA: 256) keeps it as a "conv_clamp" entry that StyleAtlas reads back; other
    rosinality tools ignore that entry and so do not clamp.
    """
    print_warnings(ctx)
    report = convert(src, dst)

    def lines():
        snap = report.get("snapshot")
        yield f"wrote {report['output']} ({report['bytes'] / 2**20:.1f} MiB, rosinality format)"
        yield (
            f"  {report['resolution']} px, style_dim {report['style_dim']}, mapping layers {report['n_mlp']}, "
            f"{report['style_layers']} style layers, conv_clamp {report['conv_clamp']}"
        )
        if snap:
            fp16 = ", ".join(map(str, snap["fp16_resolutions"])) or "none"
            yield (
                f"  from G_ema of {report['input']} (keys {', '.join(snap['keys'])}); fp16 blocks on NVIDIA's "
                f"side: {fp16} (run here in fp32); w_avg {'copied' if snap['has_w_avg'] else 'estimated'}"
            )
        yield f"  fingerprint {report['fingerprint'][:16]}…"

    emit(as_json, report, lines)


def main(args=None):
    run_cli(cli, args)


if __name__ == "__main__":
    main()
