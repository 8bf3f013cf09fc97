"""Reading and writing rosinality-format StyleGAN2 checkpoints, safely (weights_only) and atomically.

The architecture is inferred from tensor shapes, so any resolution, channel width, style_dim and mapping
depth loads. Anything else (a discriminator, a StyleCLIP mapper, a truncated file) is refused in one line.
"""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path

import torch

from models.errors import CheckpointError
from models.stylegan2 import StyleGAN2Generator

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


def require_file(path: Path, what: str, inner: str) -> None:
    """One-line CheckpointError for a weights file that is missing, a directory, or empty."""
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist; check the path.")
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a directory; pass the {inner} inside it.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes); the download or copy did not finish.")


def read_checkpoint(path: Path) -> object:
    """torch.load with weights_only=True and one-line errors for missing, corrupt or unsafe files."""
    require_file(path, "checkpoint", ".pt file")
    try:
        # argparse.Namespace appears in rosinality training checkpoints ("args"); it holds plain values.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(str(exc))
        if "global" in detail.lower():
            raise CheckpointError(
                f"checkpoint {path} contains pickled code or objects that are not loaded for "
                f"safety ({detail[:160]}); re-save it with tensors only."
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch file (truncated or corrupt?): {detail[:160]}"
        ) from None
    except Exception as exc:  # a text file or garbage trips the unpickler in many ways (IndexError, KeyError ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch file (truncated or corrupt?): {first[:160]}"
        ) from None


def _unpickler_detail(message: str) -> str:
    """The informative part of torch's weights_only refusal, without its boilerplate paragraph."""
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith(boiler)]
    text = " ".join(lines).replace("WeightsUnpickler error:", "").strip()
    return text or "unreadable pickle"


def _generator_state(ckpt, path: Path) -> tuple[dict, torch.Tensor | None]:
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


def load_generator(path, device="cpu") -> StyleGAN2Generator:
    """Load a rosinality-format StyleGAN2 checkpoint (dict with "g_ema" [+ "latent_avg"], or a bare state dict).

    "demo" loads the shipped shapes-world generator. Without latent_avg, mean_w is the mean of mapping(z)
    over 10,000 seeded z. A `.pkl` that is not a zip is an NVIDIA network pickle (models/nvidia.py).
    """
    path = resolve_generator_path(path)
    if path.suffix.lower() == ".pkl" and path.is_file() and not zipfile.is_zipfile(path):
        from models.nvidia import load_nvidia_generator

        return load_nvidia_generator(path, device=device)
    ckpt = read_checkpoint(path)
    sd, latent_avg = _generator_state(ckpt, path)
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    gen = StyleGAN2Generator(**infer_architecture(sd, path), conv_clamp=_conv_clamp(ckpt, path))
    expected = gen.state_dict()
    missing = [k for k in expected if k not in sd and not k.startswith("noises.")]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise CheckpointError(f"{path} does not match the StyleGAN2 layout inferred from its shapes ({what}).")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{path} has inconsistent shapes: '{k}' is {tuple(v.shape)}, the architecture "
                f"inferred from the other tensors needs {tuple(expected[k].shape)}."
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path} has non-finite values in '{k}'; the file is corrupt.")
    gen.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    if latent_avg is not None:
        flat = latent_avg.reshape(-1, gen.w_dim)[0] if latent_avg.numel() % gen.w_dim == 0 else None
        if flat is None:
            raise CheckpointError(f"{path} has latent_avg of shape {tuple(latent_avg.shape)}, not [{gen.w_dim}].")
        gen.mean_w.copy_(flat.float())
    else:
        gen.update_mean_w(n=10_000, seed=0)
    gen.source = str(path)
    if path.resolve() == DEMO_GENERATOR.resolve():
        gen.source, gen.neutral = "demo", "shape"  # the shapes world's class word
    return gen.to(device).eval()


def _conv_clamp(ckpt, path: Path) -> float | None:
    """The optional "conv_clamp" entry (written for NVIDIA-converted generators; rosinality tools ignore it)."""
    clamp = ckpt.get("conv_clamp") if isinstance(ckpt, dict) else None
    if clamp is not None and (isinstance(clamp, bool) or not isinstance(clamp, (int, float)) or not clamp > 0):
        raise CheckpointError(f"{path} has conv_clamp {clamp!r}; it must be a positive number or absent.")
    return clamp


def save_generator(generator: StyleGAN2Generator, path) -> None:
    """Write {"g_ema": state_dict, "latent_avg": mean_w} via a temp file and rename (never half a file).

    A generator with a conv_clamp (NVIDIA StyleGAN2-ADA) also gets a "conv_clamp" number beside them.
    """
    from index.io import atomic_path  # here, not at the top: index imports models

    state = {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}
    payload = {"g_ema": state, "latent_avg": generator.mean_w.detach().cpu().clone()}
    if getattr(generator, "conv_clamp", None) is not None:
        payload["conv_clamp"] = float(generator.conv_clamp)
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as exc:
        raise CheckpointError(f"could not write {path}: {exc.strerror or exc}.") from None
