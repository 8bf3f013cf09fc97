"""Files around edits: latent codes in (.npy / .pt), PNG strips and grids out (with their settings), bar charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.errors import AtlasError
from models.files import atomic_path

if TYPE_CHECKING:  # torch loads when an image or a latent file is handled, not when this module is imported
    import torch

LATENT_KEYS = ("ws", "w", "latent", "latents", "codes", "w_plus")


MAX_ALPHAS = 64  # columns of one strip
MAX_CELL = 1024  # pixels of one grid cell
MAX_STEPS = 64  # columns of one channel grid
MAX_SEEDS = 64  # rows of one strip or grid


def check_count(value, name: str, low: int, high: int) -> int:
    """An integer option within [low, high] (caps keep a typo from asking for gigabytes), else AtlasError."""
    try:
        value = int(value)
    except (TypeError, ValueError, OverflowError):
        raise AtlasError(f"{name} must be a whole number, got {value!r}.") from None
    if not low <= value <= high:
        raise AtlasError(f"{name} must be between {low} and {high:,}, got {value}.")
    return value


def parse_alphas(specs) -> list[float]:
    """'4', '-4,0,4' or 'start:stop:count' (evenly spaced, both ends included), repeatable -> finite floats."""
    from query.checks import check_alpha

    out = []
    for spec in specs:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if ":" in part:
                    start, stop, count = part.split(":")
                    if not 1 <= int(count) <= MAX_ALPHAS:
                        raise AtlasError(f"alpha {part!r} asks for {count} values; at most {MAX_ALPHAS} columns.")
                    out += np.linspace(float(start), float(stop), int(count)).tolist()
                else:
                    out.append(float(part))
            except ValueError:
                raise AtlasError(
                    f"alpha {part!r} is not a number, a comma list or start:stop:count (e.g. -6:6:5)."
                ) from None
    if not out:
        raise AtlasError("give at least one alpha, e.g. --alpha 4 or --alpha -6:6:5.")
    if len(out) > MAX_ALPHAS:
        raise AtlasError(f"{len(out)} alphas is too many for one strip; give at most {MAX_ALPHAS}.")
    return [check_alpha(a) for a in out]


def load_latent(path, w_dim: int, num_ws: int) -> torch.Tensor:
    """W [B, w_dim] or W+ [B, num_ws, w_dim] from .npy or .pt (weights_only); a single code gets B = 1."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise AtlasError(f"latent file {path} does not exist; pass a .npy or .pt file of W or W+ codes.")
    try:
        if path.suffix == ".npy":
            x = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.suffix in (".pt", ".pth"):
            x = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise AtlasError(f"latent file {path.name} must be .npy or .pt.")
    except AtlasError:
        raise
    except Exception as exc:  # pickles, truncated files, unsupported objects
        raise AtlasError(
            f"cannot read latent file {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"
            "; save a tensor with torch.save or np.save."
        ) from None
    if isinstance(x, dict):
        found = [x[k] for k in LATENT_KEYS if k in x]
        tensors = [v for v in x.values() if isinstance(v, torch.Tensor)]
        x = found[0] if found else tensors[0] if len(tensors) == 1 else x
    if not isinstance(x, torch.Tensor):
        raise AtlasError(f"latent file {path} holds a {type(x).__name__}, not one tensor of W or W+ codes.")
    x = x.detach().float()
    if x.ndim == 1:
        x = x[None]  # [1, w_dim]
    elif x.ndim == 2 and x.shape[0] == num_ws and num_ws > 1:
        x = x[None]  # one W+ code [1, num_ws, w_dim]
    if x.ndim in (2, 3) and x.shape[0] == 0:
        raise AtlasError(f"latent file {path.name} holds no codes (shape {tuple(x.shape)}); save at least one.")
    from models.latents import check_latent_shape

    x = check_latent_shape(x, w_dim, num_ws)
    if x.shape[0] > 4096:
        raise AtlasError(f"latent file {path.name} holds {x.shape[0]:,} codes; edit at most 4,096 at a time.")
    if not torch.isfinite(x).all():
        raise AtlasError(f"latent in {path.name} holds NaN or infinite values.")
    return x


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in about [-1, 1] -> [B, H, W, 3] uint8."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.permute(0, 2, 3, 1).numpy().astype(np.uint8)


def fit_cell(img: np.ndarray, cell_h: int, cell_w: int) -> np.ndarray:
    """[H, W, 3] uint8 -> [cell_h, cell_w, 3], filling the cell: whole-pixel repeats for integer upscales (pixels
    stay sharp), nearest for other upscales, Lanczos (antialiased) when shrinking."""
    h, w = img.shape[:2]
    if (h, w) == (cell_h, cell_w):
        return img
    if cell_h % h == 0 and cell_w % w == 0 and cell_h // h == cell_w // w:
        return img.repeat(cell_h // h, 0).repeat(cell_w // w, 1)
    from PIL import Image

    resample = Image.Resampling.NEAREST if cell_h >= h else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(img).resize((cell_w, cell_h), resample))


def cell_size(images: torch.Tensor, cell: int = 0) -> tuple[int, int]:
    """(height, width) of a grid cell for [.., 3, H, W] images: `cell` pixels high (0: H), width by aspect."""
    h, w = images.shape[-2:]
    cell_h = int(cell) if cell else int(h)
    return cell_h, max(1, round(cell_h * int(w) / int(h)))


def image_grid(rows: list[torch.Tensor], cell: int = 0, gap: int = 2) -> np.ndarray:
    """rows[i]: [n_cols, 3, H, W] -> one uint8 picture, every cell `cell` px high and filled (see fit_cell)."""
    cell_h, cell_w = cell_size(rows[0], cell)
    n_rows, n_cols = len(rows), rows[0].shape[0]
    canvas = np.full((n_rows * cell_h + (n_rows - 1) * gap, n_cols * cell_w + (n_cols - 1) * gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(to_uint8(row)):
            y, x = i * (cell_h + gap), j * (cell_w + gap)
            canvas[y : y + cell_h, x : x + cell_w] = fit_cell(img, cell_h, cell_w)
    return canvas


def png_path(path) -> Path:
    path = Path(path).expanduser()
    if path.suffix.lower() != ".png":
        raise AtlasError(
            f"{path.name} is not a .png name; images are written as PNG (their settings ride in the "
            "PNG text chunk), e.g. -o edit.png."
        )
    return path


def png_info(text: dict):
    """PNG tEXt chunks for `text`: every value as JSON (strings as they are), and 'styleatlas' holding them all."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("styleatlas", json.dumps(text, sort_keys=True))
    for key, value in text.items():
        info.add_text(str(key), value if isinstance(value, str) else json.dumps(value))
    return info


def save_png(path, picture: np.ndarray, text: dict) -> Path:
    """Write a PNG atomically with `text` in its tEXt chunks (every value JSON; 'styleatlas' holds them all)."""
    from PIL import Image

    path = png_path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG", pnginfo=png_info(text))
    return path


def plot_layers(path, atlas, d, title: str = "") -> Path:
    """Bar chart of the channels a direction moves per style layer (up and down), saved as PNG."""
    from index.io import refuse_inside

    refuse_inside(atlas.data.path, png_path(path), "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [l for l in atlas.data.layers if l["in_atlas"]]
    ch = atlas.data.channels
    up = [int(((ch[:, 0] == l["index"]) & (d.delta_s > 0)).sum()) for l in layers]
    down = [int(((ch[:, 0] == l["index"]) & (d.delta_s < 0)).sum()) for l in layers]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(layers)), 3.5))
    x = np.arange(len(layers))
    ax.bar(x, up, color="tab:red", label="pushed up (+alpha)")
    ax.bar(x, down, bottom=up, color="tab:blue", label="pushed down")
    ax.set_xticks(x, [f"{l['index']}\n{l['resolution']}px" for l in layers], fontsize=7)
    ax.set_xlabel("style layer")
    ax.set_ylabel("channels moved")
    ax.set_title(title or f"{d.prompt!r}: {d.num_c} channels (beta {d.beta})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = png_path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
