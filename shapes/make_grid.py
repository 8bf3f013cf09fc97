"""Write docs/demo_samples.png: 16 demo-generator samples at psi 0.7 (fixed seed), 4x4, nearest-upscaled.

python -m shapes.make_grid [--generator demo] [--out docs/demo_samples.png] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from models.files import atomic_path
from models.stylegan2 import load_generator
from shapes.evaluate import generator_samples

REPO = Path(__file__).resolve().parents[1]


def image_grid(images: torch.Tensor, columns: int = 4, cell: int = 128, gap: int = 4) -> Image.Image:
    """[n, 3, H, W] in [-1, 1] -> one RGB picture, each image nearest-upscaled to `cell` px, white gaps."""
    x = F.interpolate(images.float(), size=(cell, cell), mode="nearest")
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().byte()  # [n, 3, cell, cell]
    rows = -(-x.shape[0] // columns)
    canvas = torch.full((3, rows * (cell + gap) + gap, columns * (cell + gap) + gap), 255, dtype=torch.uint8)
    for i, img in enumerate(x):
        top, left = gap + (i // columns) * (cell + gap), gap + (i % columns) * (cell + gap)
        canvas[:, top : top + cell, left : left + cell] = img
    return Image.fromarray(canvas.permute(1, 2, 0).numpy())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="demo")
    parser.add_argument("--out", default=str(REPO / "docs" / "demo_samples.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--psi", type=float, default=0.7)
    args = parser.parse_args(argv)
    gen = load_generator(args.generator)
    _, images = generator_samples(gen, 16, psi=args.psi, seed=args.seed)
    out = Path(args.out)
    with atomic_path(out, suffix=out.suffix) as tmp:  # PIL picks the format from the suffix
        image_grid(images).save(tmp)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
