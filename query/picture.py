"""Pictures a person can read: a grid of images under a header row (what was edited, how), with a label over
every column (alpha) and beside every row (seed or latent index); and the frames and codes behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import AtlasError

INK = (20, 20, 20)
PAPER = 255
PAD = 4  # pixels around text


@dataclass(frozen=True)
class Layout:
    """Where the cells of a labelled grid sit: cell (row i, column j) is [y0 + i*(h+gap), x0 + j*(w+gap)]."""

    x0: int
    y0: int
    cell_h: int
    cell_w: int
    gap: int

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of cell (i, j)."""
        y, x = self.y0 + i * (self.cell_h + self.gap), self.x0 + j * (self.cell_w + self.gap)
        return y, x, y + self.cell_h, x + self.cell_w

    def to_dict(self) -> dict:
        return dict(x0=self.x0, y0=self.y0, cell_h=self.cell_h, cell_w=self.cell_w, gap=self.gap)


def font(size: int):
    """PIL's bundled scalable font (FreeType builds), else its fixed bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


def _text_size(draw, text: str, face) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    return right - left, bottom - top


def _wrap(draw, text: str, face, width: int) -> list[str]:
    """Greedy word wrap of `text` to lines no wider than `width` pixels (a long word keeps its own line)."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and _text_size(draw, trial, face)[0] > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def labelled_grid(
    grid: np.ndarray,
    layout: Layout,
    n_rows: int,
    n_cols: int,
    header: str,
    columns: list[str],
    rows: list[str],
    size: int = 0,
) -> tuple[np.ndarray, Layout]:
    """Put a header (wrapped), column labels and row labels around an image grid; return it and the new layout.

    grid: [H, W, 3] uint8 from media.image_grid, whose cells sit at `layout`. size: text height in pixels
    (default: about a tenth of a cell, at least 11).
    """
    from PIL import Image, ImageDraw

    if len(columns) != n_cols or len(rows) != n_rows:
        raise AtlasError(f"a grid of {n_rows} x {n_cols} cells needs as many labels, got {len(rows)} x {len(columns)}.")
    face = font(size or max(11, min(layout.cell_h, layout.cell_w) // 9))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = max(_text_size(probe, "Ag|", face)[1], 1) + 2
    left = max([_text_size(probe, r, face)[0] for r in rows] + [0]) + 2 * PAD
    header_lines = _wrap(probe, header, face, max(grid.shape[1] + left - 2 * PAD, 40)) if header else []
    top = len(header_lines) * line_h + (2 * PAD if header_lines else 0) + line_h + PAD
    canvas = Image.new("RGB", (grid.shape[1] + left, grid.shape[0] + top), (PAPER,) * 3)
    canvas.paste(Image.fromarray(grid), (left, top))
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(header_lines):
        draw.text((PAD, PAD + n * line_h), line, fill=INK, font=face)
    new = Layout(x0=layout.x0 + left, y0=layout.y0 + top, cell_h=layout.cell_h, cell_w=layout.cell_w, gap=layout.gap)
    for j, label in enumerate(columns):
        y, x, _, right = new.box(0, j)
        w, _ = _text_size(draw, label, face)
        draw.text((x + max((right - x - w) // 2, 0), y - line_h - PAD // 2), label, fill=INK, font=face)
    for i, label in enumerate(rows):
        y, _, bottom, _ = new.box(i, 0)
        draw.text((PAD, y + max((bottom - y - line_h) // 2, 0)), label, fill=INK, font=face)
    return np.asarray(canvas), new


def alpha_label(alpha: float) -> str:
    """'alpha +4', 'alpha 0' (ASCII: the font bundled with Pillow has no Greek letters)."""
    return f"alpha {alpha:+g}" if alpha else "alpha 0"


def frame_name(row: str, column: str) -> str:
    """A file-name-safe stem for one frame, e.g. 'seed3_alpha+4'."""
    text = f"{row}_{column}".replace(" ", "")
    return "".join(ch if ch.isalnum() or ch in "+-._" else "_" for ch in text)


def save_frames(folder, images: list, row_labels: list[str], column_labels: list[str], settings: dict) -> list[str]:
    """Every image at full resolution as its own PNG (settings in its text chunk); return the paths written.

    images[i][j]: [3, H, W] tensor of row i, column j.
    """
    from query.media import save_png, to_uint8

    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise AtlasError(f"--save-frames {folder} is a file; pass a folder (it is created when missing).")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, row in enumerate(images):
        pictures = to_uint8(row)  # [n, H, W, 3]
        for j, picture in enumerate(pictures):
            path = folder / f"{frame_name(row_labels[i], column_labels[j])}.png"
            save_png(path, picture, dict(settings, row=row_labels[i], column=column_labels[j]))
            written.append(str(path))
    return written


LATENT_FORMATS = (".pt", ".npz")


def check_outputs(frames=None, latents=None, atlas_dir=None) -> None:
    """Refuse a frames path that is a file, a latents path of another format, and either inside the atlas folder
    (index.io.refuse_inside), before anything is rendered."""
    from index.io import refuse_inside

    for path, what in ((frames, "frames folder"), (latents, "latents file")):
        if path is not None:
            refuse_inside(atlas_dir, path, what)
    if frames is not None and Path(frames).expanduser().is_file():
        raise AtlasError(f"--save-frames {frames} is a file; pass a folder (it is created when missing).")
    if latents is not None and Path(latents).suffix not in LATENT_FORMATS:
        raise AtlasError(f"--save-latents writes .pt or .npz; {Path(latents).name} has neither suffix.")


def save_styles(path, styles: list, ws, alphas: list[float], settings: dict) -> dict:
    """The edited style codes S (one array per style layer, [B, A, width], what generator.synthesize takes after
    flattening B x A) with the source W / W+ codes and the alphas, to .pt or .npz; returns what was written."""
    import json

    import torch

    from models.files import atomic_path

    path = Path(path).expanduser()
    if path.suffix not in LATENT_FORMATS:
        raise AtlasError(f"--save-latents writes .pt or .npz; {path.name} has neither suffix.")
    layers = [s.detach().float().cpu() for s in styles]  # L x [B, A, width]
    ws = ws.detach().float().cpu()
    if path.suffix == ".pt":
        obj = dict(styles=layers, ws=ws, alphas=torch.tensor(alphas), settings=settings, space="S")
        with atomic_path(path, suffix=".pt") as tmp:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
    else:
        arrays = {f"style_{i:02d}": s.numpy() for i, s in enumerate(layers)}
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    ws=ws.numpy(),
                    alphas=np.asarray(alphas, np.float64),
                    settings=np.array(json.dumps(settings, default=str)),
                    space=np.array("S"),
                    **arrays,
                )
    return dict(
        path=str(path),
        space="S",
        layers=len(layers),
        shape=[list(s.shape) for s in layers[:1]],
        ws_shape=list(ws.shape),
    )
