"""The rosinality StyleGAN2 checkpoint format: which entry holds the generator, and its architecture.

The architecture is inferred from tensor shapes, so any resolution, channel width, style_dim and mapping
depth loads. Anything else (a discriminator, a StyleCLIP mapper, a truncated file) is refused in one line.
Building the network from them is `models.stylegan2.load_generator`; this module knows only the dict.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from models.errors import CheckpointError

DEMO_GENERATOR = Path(__file__).resolve().parent / "demo" / "generator.pt"


def resolve_generator_path(path) -> Path:
    """ "demo" names the shipped shapes-world generator; anything else is a file path."""
    if str(path) == "demo":
        if not DEMO_GENERATOR.exists():
            raise CheckpointError(
                f"the demo generator {DEMO_GENERATOR} is missing; reinstall StyleAtlas or "
                "train it with `python -m shapes.train_generator`."
            )
        return DEMO_GENERATOR
    return Path(path).expanduser()


def generator_state(ckpt, path: Path) -> tuple[dict, torch.Tensor | None]:
    """Pick the generator state dict out of a checkpoint object, or say what the file is instead."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a StyleGAN2 checkpoint dict.")
    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt.get("latent_avg"), torch.Tensor) else None
    if isinstance(ckpt.get("g_ema"), dict):
        return ckpt["g_ema"], latent_avg
    if isinstance(ckpt.get("g"), dict):
        return ckpt["g"], latent_avg
    if "style.1.weight" in ckpt:
        return ckpt, latent_avg
    if isinstance(ckpt.get("state_dict"), dict) and "decoder.style.1.weight" in ckpt["state_dict"]:
        # an e4e / pSp checkpoint: its decoder.* keys are a rosinality generator (latent_avg may be [num_ws, w_dim])
        return {
            k[len("decoder.") :]: v for k, v in ckpt["state_dict"].items() if str(k).startswith("decoder.")
        }, latent_avg
    keys = list(ckpt)
    if "d" in ckpt or any(str(k).startswith(("convs.0.0", "final_linear", "final_conv")) for k in keys):
        kind = "a discriminator-only checkpoint"
    elif "state_dict" in ckpt and any("mapping" in str(k) for k in ckpt["state_dict"]):
        kind = "a StyleCLIP latent-mapper checkpoint"
    elif any("visual" in str(k) or "token_embedding" in str(k) for k in keys):
        kind = "a CLIP checkpoint"
    else:
        kind = f"a checkpoint with keys {', '.join(map(str, keys[:4]))}"
    raise CheckpointError(f"{path} is {kind}, not a StyleGAN2 generator (expected 'g_ema' or 'style.1.weight').")


def infer_architecture(sd: dict, path: Path) -> dict:
    """StyleGAN2Generator keyword arguments from tensor shapes of a rosinality state dict."""

    def shape(key):
        if key not in sd:
            raise CheckpointError(f"{path} lacks '{key}', so it is not a complete rosinality StyleGAN2 generator.")
        return tuple(sd[key].shape)

    mlp = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    if not mlp or mlp != list(range(1, len(mlp) + 1)):
        raise CheckpointError(f"{path} has no mapping network ('style.1.weight' ... missing or out of order).")
    style_dim = shape("style.1.weight")[1]
    n_conv = len([k for k in sd if re.fullmatch(r"convs\.\d+\.conv\.weight", k)])
    if n_conv % 2:
        raise CheckpointError(f"{path} has {n_conv} upsampling-block convs; a StyleGAN2 generator has an even number.")
    log_size = n_conv // 2 + 2
    channels = {4: shape("conv1.conv.weight")[1]}
    for i in range(3, log_size + 1):
        channels[2**i] = shape(f"convs.{2 * (i - 3)}.conv.weight")[1]
    return dict(resolution=2**log_size, style_dim=style_dim, n_mlp=len(mlp), channels=channels)


def read_conv_clamp(ckpt, path: Path) -> float | None:
    """The optional "conv_clamp" entry (written for NVIDIA-converted generators; rosinality tools ignore it)."""
    clamp = ckpt.get("conv_clamp") if isinstance(ckpt, dict) else None
    if clamp is not None and (isinstance(clamp, bool) or not isinstance(clamp, (int, float)) or not clamp > 0):
        raise CheckpointError(f"{path} has conv_clamp {clamp!r}; it must be a positive number or absent.")
    return clamp
