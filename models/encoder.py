"""The e4e encoder (Tov et al. 2021) in pure PyTorch: image -> W+ latent, read from `e4e_ffhq_encode.pt`.

Layout as in encoder4editing's `Encoder4Editing` under the checkpoint's `encoder.` prefix: the IR-SE50 body
(models/irse.py), `styles.{i}` map-to-style blocks (stride-2 3x3 convs + leaky ReLU down to 1x1, then an
EqualLinear), and the feature-pyramid laterals `latlayer1` (256 -> 512) and `latlayer2` (128 -> 512).
w_0 comes from the coarsest features; every later W+ entry is w_0 plus its own offset; `latent_avg` is added.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import AtlasError, CheckpointError
from models.files import read_checkpoint, require_file
from models.irse import IRSEBody, irse_depth, load_state_strict
from models.stylegan2 import EqualLinear

E4E_SIZE = 256  # e4e's input resolution
COARSE, MIDDLE = 3, 7  # W+ entries [0, 3) read the 16 px features, [3, 7) 32 px, the rest 64 px


class MapToStyle(nn.Module):
    """e4e's GradualStyleBlock: log2(spatial) stride-2 convs (leaky ReLU 0.01) to 1x1, then an EqualLinear."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        layers = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c)
        self.out_c = out_c

    def forward(self, x):
        return self.linear(self.convs(x).reshape(-1, self.out_c))  # [B, out_c]


def upsample_add(x: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Feature-pyramid merge: x bilinearly resized (align_corners) to the lateral's size, plus the lateral."""
    return F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class E4EEncoder(nn.Module):
    """Encoder4Editing at inference (every progressive delta on) + latent_avg: [B, 3, H, W] -> [B, num_ws, w_dim]."""

    def __init__(self, num_ws: int, w_dim: int = 512, num_layers: int = 50):
        super().__init__()
        self.num_ws, self.w_dim = num_ws, w_dim
        self.irse = IRSEBody(num_layers)
        self.styles = nn.ModuleList(
            [MapToStyle(512, w_dim, 16 if i < COARSE else 32 if i < MIDDLE else 64) for i in range(num_ws)]
        )
        self.latlayer1 = nn.Conv2d(256, 512, 1)
        self.latlayer2 = nn.Conv2d(128, 512, 1)
        self.register_buffer("latent_avg", torch.zeros(num_ws, w_dim))

    def deltas(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 256, 256] -> W+ without latent_avg [B, num_ws, w_dim] (e4e's encoder output)."""
        _, c1, c2, c3 = self.irse.features(x)  # 128 ch @ 64 px, 256 @ 32, 512 @ 16
        w0 = self.styles[0](c3)  # [B, w_dim]
        out = [w0]
        features = c3
        for i in range(1, self.num_ws):
            if i == COARSE:
                p2 = upsample_add(c3, self.latlayer1(c2))  # [B, 512, 32, 32]
                features = p2
            elif i == MIDDLE:
                features = upsample_add(p2, self.latlayer2(c1))  # [B, 512, 64, 64]
            out.append(w0 + self.styles[i](features))
        return torch.stack(out, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1], any size (resized to 256 px) -> W+ [B, num_ws, w_dim], latent_avg added."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise AtlasError(f"the encoder takes a [B, 3, H, W] tensor in [-1, 1], got {shape}.")
        x = images.to(self.latent_avg.device, torch.float32)
        if x.shape[-2:] != (E4E_SIZE, E4E_SIZE):
            x = F.interpolate(x, size=(E4E_SIZE, E4E_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return self.deltas(x) + self.latent_avg


def _encoder_state(ckpt, path) -> tuple[dict, torch.Tensor | None]:
    """(the `encoder.*` weights without prefix, latent_avg) of an e4e checkpoint, or a one-line error."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not an e4e checkpoint dict.")
    sd = ckpt.get("state_dict")
    if not isinstance(sd, dict) or not any(str(k).startswith("encoder.") for k in sd):
        if "input_layer.0.weight" in ckpt:
            what = "an ArcFace IR-SE50 identity model (pass it as the identity)"
        elif "g_ema" in ckpt or "style.1.weight" in ckpt:
            what = "a StyleGAN2 generator"
        else:
            what = f"a file with keys {', '.join(map(str, list(ckpt)[:4]))}"
        raise CheckpointError(f"{path} is {what}, not an e4e encoder (expected 'state_dict' with 'encoder.*' keys).")
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), dict) else {}
    if opts.get("encoder_type", "Encoder4Editing") != "Encoder4Editing":
        raise CheckpointError(
            f"{path} is a {opts['encoder_type']} (pSp) encoder; only e4e's Encoder4Editing is supported."
        )
    state = {k[len("encoder.") :]: v for k, v in sd.items() if str(k).startswith("encoder.")}
    latent_avg = ckpt.get("latent_avg")
    return state, latent_avg if isinstance(latent_avg, torch.Tensor) else None


def load_encoder(path, device="cpu") -> E4EEncoder:
    """Read an e4e checkpoint (`e4e_ffhq_encode.pt`: {"state_dict": {"encoder.*", "decoder.*"}, "latent_avg"})."""
    path = Path(path).expanduser()
    require_file(path, "encoder checkpoint", ".pt file")
    state, latent_avg = _encoder_state(read_checkpoint(path), path)
    num_ws = len({int(m.group(1)) for k in state if (m := re.match(r"styles\.(\d+)\.", k))})
    if num_ws == 0 or "styles.0.linear.weight" not in state:
        raise CheckpointError(f"{path} has no e4e style blocks (encoder.styles.*); it is not an e4e encoder.")
    w_dim = int(state["styles.0.linear.weight"].shape[0])
    enc = E4EEncoder(num_ws, w_dim, irse_depth(state))
    body = {k: v for k, v in state.items() if k.startswith(("input_layer.", "body."))}
    rest = {k: v for k, v in state.items() if k not in body}
    load_state_strict(enc.irse, body, path, "e4e IR-SE body")
    load_state_strict(
        nn.ModuleDict(dict(styles=enc.styles, latlayer1=enc.latlayer1, latlayer2=enc.latlayer2)),
        rest,
        path,
        "e4e style heads",
    )
    if latent_avg is None:
        raise CheckpointError(f"{path} has no latent_avg; e4e adds it to every code (re-save the checkpoint with it).")
    if latent_avg.numel() == w_dim:
        latent_avg = latent_avg.reshape(1, w_dim).expand(num_ws, w_dim)
    if tuple(latent_avg.shape) != (num_ws, w_dim) or not torch.isfinite(latent_avg).all():
        raise CheckpointError(
            f"{path} has latent_avg of shape {tuple(latent_avg.shape)}; the encoder needs "
            f"[{num_ws}, {w_dim}] (or [{w_dim}]) finite values."
        )
    enc.latent_avg.copy_(latent_avg.float())
    enc.source = str(path)
    return enc.to(device).eval().requires_grad_(False)
