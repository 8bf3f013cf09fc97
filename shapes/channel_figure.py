"""Write docs/demo_channels.png: one StyleSpace channel per attribute family, moved -alpha..+alpha sigma.

python -m shapes.channel_figure [--generator demo] [--out docs/demo_channels.png] [--alpha 5] [--seed 5]

Each row is the family's best channel (shapes.families.best_channels over the strict +-5 sigma probe),
labelled with the family, (layer, channel) and whether it passed the strict test; each column adds t sigma
to that channel in the same psi-0.7 sample, t from -alpha to +alpha.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from models.files import atomic_path
from models.stylegan2 import load_generator
from shapes import style_stats
from shapes.families import best_channels
from shapes.make_grid import image_grid
from shapes.probe import EDIT_ATTRIBUTES, channel_effects

REPO = Path(__file__).resolve().parents[1]
LABEL_WIDTH = 190


@torch.no_grad()
def channel_strips(gen, channels: dict, alpha: float = 5.0, columns: int = 7, seed: int = 5, psi: float = 0.7):
    """{family: (layer, channel)} -> images [len(channels) * columns, 3, R, R]: each channel moved by
    t sigma (its std over the strict probe's 2,000 psi-truncated samples), t = linspace(-alpha, alpha, columns),
    in one sample."""
    sigma = style_stats(gen, 2000, psi)[1]
    base = gen.styles(gen.sample_ws(1, seed=seed, psi=psi))  # one [1, width] per layer
    steps = torch.linspace(-alpha, alpha, columns)
    rows = []
    for layer, channel in channels.values():
        styles = [s.repeat(columns, 1) for s in base]
        styles[layer][:, channel] += steps * sigma[layer][channel]
        rows.append(gen.synthesize(styles))
    return torch.cat(rows)


def figure(gen, channels: dict, strict: dict, alpha: float, seed: int, columns: int = 7) -> Image.Image:
    """The strips as one picture, a label left of each row."""
    grid = image_grid(channel_strips(gen, channels, alpha, columns, seed), columns=columns, cell=64, gap=4)
    canvas = Image.new("RGB", (LABEL_WIDTH + grid.width, grid.height + 20), "white")
    canvas.paste(grid, (LABEL_WIDTH, 20))
    draw = ImageDraw.Draw(canvas)
    for j, t in enumerate(np.linspace(-alpha, alpha, columns)):
        draw.text((LABEL_WIDTH + 4 + j * 68 + 18, 4), f"{t:+.1f}s", fill="black")
    for i, (family, (layer, channel)) in enumerate(channels.items()):
        label = (
            f"{family}\n(layer {layer}, ch {channel})\n{'single-attribute' if strict[family] else 'best, not strict'}"
        )
        draw.multiline_text((6, 20 + 4 + i * 68 + 12), label, fill="black")
    return canvas


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="demo")
    parser.add_argument("--out", default=str(REPO / "docs" / "demo_channels.png"))
    parser.add_argument("--alpha", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--channel-samples", type=int, default=16)
    parser.add_argument(
        "--channels",
        default="",
        help="family:layer:channel,... (strict ones marked by a trailing :strict) "
        "instead of running the probe, e.g. from benchmarks/demo_quality.py --json",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gen = load_generator(args.generator)
    if args.channels:
        parts = [item.split(":") for item in args.channels.split(",")]
        chosen = {p[0]: (int(p[1]), int(p[2])) for p in parts}
        strict = {p[0]: p[3:] == ["strict"] for p in parts}
        best = {f: dict(best=dict(layer=c[0], channel=c[1], strict=strict[f])) for f, c in chosen.items()}
    else:
        best = best_channels(channel_effects(gen, n=args.channel_samples))
        chosen = {f: (b["best"]["layer"], b["best"]["channel"]) for f in EDIT_ATTRIBUTES if (b := best[f])["best"]}
        strict = {f: best[f]["best"]["strict"] for f in chosen}
    out = Path(args.out)
    with atomic_path(out, suffix=out.suffix) as tmp:
        figure(gen, chosen, strict, args.alpha, args.seed).save(tmp)
    for f, (layer, channel) in chosen.items():
        print(f"{f}: layer {layer} channel {channel} strict {strict[f]} {best[f]['best']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
