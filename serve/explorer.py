"""What the page computes: directions (cached), stacked edits with channels turned off, images as PNG bytes.

The style codes of every image are computed once and kept, so a slider move costs one synthesis and one
PNG encode: s + Σ alpha_i Δs_i over the stacked edits is the whole of a global-direction edit (SPEC §5).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from query.direction import DEFAULT_BETA
from serve.params import MAX_RENDERS, RequestError, View


class LRU(OrderedDict):
    """A dict that forgets its least recently used entries beyond `size`."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class Explorer:
    """One atlas served to the page: a lock around the models, caches for directions, styles and latents."""

    def __init__(self, atlas, noise_mode: str = "const"):
        self.atlas = atlas
        self.noise_mode = noise_mode
        self.lock = threading.RLock()  # the atlas caches and the models are not shared across threads
        self._directions = LRU(128)
        self._styles = LRU(256)  # source -> list of [1, width] style tensors
        self._latents = LRU(32)  # upload id -> [B, w_dim] or [B, num_ws, w_dim]
        self._vocab_keys = None

    # ------------------------------------------------------------------ directions
    def direction(self, prompt: str, neutral: str = "", beta=DEFAULT_BETA, top_k=None):
        """atlas.direction, remembered (AtlasError when no channel passes beta)."""
        key = (prompt, neutral, beta, top_k)
        with self.lock:
            d = self._directions.get(key)
            if d is None:
                d = self._directions.put(key, self.atlas.direction(prompt, neutral, beta, top_k=top_k))
            return d

    def delta(self, view: View) -> np.ndarray:
        """Σ alpha_i Δs_i [C] over the stacked edits and the current one, less their channels turned off."""
        total = np.zeros(len(self.atlas.channels), np.float32)  # [C]
        for spec in view.stack + (view.edit,):
            if not spec.prompt:
                continue
            delta_s = self.direction(*spec.key()).delta_s  # a prompt without a direction is an error at any alpha
            if spec.alpha == 0:
                continue
            if spec.off:
                delta_s = delta_s.copy()
                delta_s[[self.atlas.row(l, c) for l, c in spec.off]] = 0
            total += np.float32(spec.alpha) * delta_s
        return total

    # ------------------------------------------------------------------ images
    def styles(self, source, psi: float) -> list[torch.Tensor]:
        """The style codes of one image: ('seed', n) sampled at truncation psi, or ('latent', id, i) uploaded."""
        key = source + ((psi,) if source[0] == "seed" else ())
        with self.lock:
            cached = self._styles.get(key)
            if cached is not None:
                return cached
            gen = self.atlas.generator
            if source[0] == "seed":
                ws = self.atlas.sample_ws([source[1]], psi)  # [1, w_dim]
            else:
                ws = self.latent(source[1], source[2])  # [1, w_dim] or [1, num_ws, w_dim]
            with torch.no_grad():
                return self._styles.put(key, [s.detach() for s in gen.styles(ws)])

    def batch_styles(self, sources, psi: float) -> list[torch.Tensor]:
        per = [self.styles(s, psi) for s in sources]
        return [torch.cat([p[layer] for p in per]) for layer in range(len(per[0]))]  # per layer [B, width]

    @torch.no_grad()
    def render(self, sources, psi: float, deltas) -> list[torch.Tensor]:
        """Images [B, 3, H, W] for every [C] offset in `deltas` (one synthesis per offset)."""
        if len(sources) * len(deltas) > MAX_RENDERS:
            raise RequestError(
                f"{len(sources)} images x {len(deltas)} edits is more than {MAX_RENDERS} renders; "
                "ask for fewer seeds or alphas."
            )
        with self.lock:
            styles = self.batch_styles(sources, psi)
            gen = self.atlas.generator
            out = []
            for delta in deltas:
                edited = self.atlas.apply(styles, delta, 1.0) if np.any(delta) else styles
                out.append(gen.synthesize(edited, noise_mode=self.noise_mode))  # [B, 3, H, W]
            return out

    # ------------------------------------------------------------------ uploads
    def add_latent(self, data: bytes, name: str) -> dict:
        """Keep an uploaded .npy / .pt latent file (read without unpickling) under the hash of its bytes."""
        from query.media import load_latent

        suffix = Path(name or "latent.npy").suffix.lower()
        if suffix not in (".npy", ".pt", ".pth"):
            raise RequestError(f"a latent file is .npy or .pt, got {Path(name).name[:60]!r}.")
        ident = hashlib.sha256(data).hexdigest()[:16]
        gen = self.atlas.generator
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                ws = load_latent(path, int(gen.w_dim), int(gen.num_ws))  # [B, w_dim] or [B, num_ws, w_dim]
            except RequestError:
                raise
            except Exception as exc:  # AtlasError names the temporary path: say it of the upload instead
                raise RequestError(
                    str(exc).replace(str(path), Path(name).name[:60]).replace(path.name, Path(name).name[:60])
                ) from None
        with self.lock:
            self._latents.put(ident, ws)
        return dict(id=ident, count=int(ws.shape[0]), shape=list(ws.shape), name=Path(name).name[:60])

    def source_ws(self, sources, psi: float) -> torch.Tensor:
        """The W+ codes [B, num_ws, w_dim] of the page's images (seeds sampled at psi, uploaded latents)."""
        gen = self.atlas.generator
        out = []
        for s in sources:
            ws = self.atlas.sample_ws([s[1]], psi) if s[0] == "seed" else self.latent(s[1], s[2])
            ws = torch.as_tensor(ws, dtype=torch.float32)
            out.append(ws[:, None].expand(-1, int(gen.num_ws), -1) if ws.ndim == 2 else ws)
        return torch.cat(out)

    def read_image(self, data: bytes, name: str) -> torch.Tensor:
        """An uploaded PNG / JPEG -> [3, R, R] in [-1, 1] at the generator's resolution (query.images)."""
        from PIL import Image

        from query.images import read_image
        from serve.params import MAX_IMAGE_PIXELS

        shown = Path(name).name[:60]
        try:
            with Image.open(io.BytesIO(data)) as im:
                kind, (w, h) = im.format, im.size
        except Exception:
            raise RequestError(f"{shown!r} is not a readable image; upload a PNG or JPEG file.") from None
        if kind not in ("PNG", "JPEG"):
            raise RequestError(f"{shown!r} is a {kind} image; upload a PNG or JPEG file.")
        if w * h > MAX_IMAGE_PIXELS:
            raise RequestError(f"{shown!r} is {w}x{h} pixels; at most {MAX_IMAGE_PIXELS:,} pixels.", status=413)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / ("upload." + kind.lower())
            path.write_bytes(data)
            try:
                return read_image(path, int(self.atlas.generator.resolution))
            except Exception as exc:
                raise RequestError(
                    f"{shown!r} is not a readable image ({type(exc).__name__}); upload a PNG or JPEG file."
                ) from None

    def invert_image(self, image: torch.Tensor, data: bytes, name: str, steps: int, progress) -> dict:
        """Invert [3, R, R] into W+ (query.invert, pixel loss only) and keep it as an uploaded latent."""
        from query.inversion import invert

        ident = hashlib.sha256(data + f"invert:{steps}".encode()).hexdigest()[:16]
        with self.lock:
            gen = self.atlas.generator
            ws, details = invert(gen, image[None], steps=steps, progress=progress, return_details=True)
            ws = ws.detach()  # [1, num_ws, w_dim]
            self._latents.put(ident, ws)
        return dict(
            id=ident,
            count=1,
            shape=list(ws.shape),
            name=Path(name).name[:60],
            steps=steps,
            psnr=round(float(details["psnr"][0]), 2),
        )

    def latent(self, ident: str, i: int) -> torch.Tensor:
        ws = self._latents.get(ident)
        if ws is None:
            raise RequestError(
                f"latent {ident[:20]!r} is not on this server (uploads last while it runs); upload the file again.",
                status=404,
            )
        if not 0 <= i < len(ws):
            raise RequestError(f"latent {ident} holds {len(ws)} codes; index {i} is out of range.")
        return ws[i : i + 1]

    # ------------------------------------------------------------------ vocabulary
    def suggest(self, q: str, k: int = 10) -> list[str]:
        """Vocabulary phrases that start with q, then those that contain it, shortest first."""
        from query.prompts import lookup_key

        if self._vocab_keys is None:
            self._vocab_keys = [lookup_key(p) for p in self.atlas.vocab]
        key = lookup_key(q)
        if not key:
            return []
        starts, contains = [], []
        for i, v in enumerate(self._vocab_keys):
            if v.startswith(key):
                starts.append(i)
            elif key in v:
                contains.append(i)
        vocab = self.atlas.vocab
        ranked = sorted(starts, key=lambda i: (len(vocab[i]), i)) + sorted(contains, key=lambda i: (len(vocab[i]), i))
        return [vocab[i] for i in ranked[:k]]


def png_bytes(picture: np.ndarray, text: dict | None = None, compress_level: int = 1) -> bytes:
    """A PNG of a uint8 [H, W, 3] picture with the settings in its text chunks (as query.media.save_png)."""
    from PIL import Image

    from query.media import png_info

    buf = io.BytesIO()
    Image.fromarray(picture).save(
        buf, format="PNG", pnginfo=png_info(text) if text else None, compress_level=compress_level
    )
    return buf.getvalue()


def picture(rows: list[torch.Tensor], cell: int | None = None) -> np.ndarray:
    """rows[i]: [n_cols, 3, H, W] -> one uint8 picture of cell-px images (area-downscaled, or nearest-upscaled)."""
    import torch.nn.functional as F

    from query.media import image_grid

    h = rows[0].shape[-1]
    if cell and cell < h:
        rows = [F.interpolate(r.float(), size=(cell, cell), mode="area") for r in rows]
    return image_grid(rows, cell or h)
