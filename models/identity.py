"""Identity embedders (SPEC §8; CONTRACT "Fallbacks and real images"): `encode(images) -> [B, dim]` unit vectors.

`load_identity(path)` reads ArcFace IR-SE50 (`model_ir_se50.pth`, the bare state dict StyleCLIP, e4e and
HairCLIP load) into `ArcFaceIdentity`, which applies their ID-loss preprocessing; `load_identity("demo")`
is the shapes world's identity (models/demo/MODEL_CARD.md).

An identity may carry `lambda_scale`: the factor that maps the reference id_lambda (0.005, tuned with
ArcFace on FFHQ) onto its own 1 - cos scale. ArcFace's is 1; the optimisers multiply id_lambda by it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from models.checkpoint import read_checkpoint, require_file
from models.errors import CheckpointError
from models.irse import IRSEBackbone, irse_depth, load_state_strict

# SPEC §8 / StyleCLIP criteria/id_loss.py: pool to 256, crop the face, pool to 112
ID_SIZE = 256
ID_CROP = (slice(35, 223), slice(32, 220))
ID_INPUT = 112
# The demo identity's lambda_scale (see DemoIdentity); calibrated on tuning samples, not the acceptance ones.
DEMO_LAMBDA_SCALE = 60.0


class ArcFaceIdentity:
    """IR-SE ArcFace with the reference ID-loss preprocessing: [B, 3, H, W] in [-1, 1] -> [B, 512] unit vectors."""

    lambda_scale = 1.0

    def __init__(self, backbone: IRSEBackbone, source: str = "custom"):
        self.backbone = backbone.eval().requires_grad_(False)
        self.dim = 512
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def to(self, device) -> "ArcFaceIdentity":
        self.backbone.to(device)
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The reference's crop: adaptive-average-pool to 256 unless already 256, crop [35:223, 32:220], pool to 112."""
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (ID_SIZE, ID_SIZE):
            x = F.adaptive_avg_pool2d(x, ID_SIZE)  # [B, 3, 256, 256]
        x = x[:, :, ID_CROP[0], ID_CROP[1]]  # [B, 3, 188, 188]
        return F.adaptive_avg_pool2d(x, ID_INPUT)  # [B, 3, 112, 112]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        return self.backbone(self.preprocess(images))


class DemoIdentity:
    """The shapes world's identity: the demo CLIP's image embedding (CLIP's own input, average-pooled).

    "The same image" there means the same shape, colour, size, background and place, which is what that
    embedding separates (100 % zero-shot on every attribute, MODEL_CARD.md); the pixel classifier stays the
    judge. Its 1 - cos moves about as much for a change of shape as for a change of colour (0.24 each on
    procedural images), far less than ArcFace's between two people, hence lambda_scale (DEMO_LAMBDA_SCALE).
    """

    lambda_scale = DEMO_LAMBDA_SCALE

    def __init__(self, clip):
        self.clip = clip
        self.dim = int(clip.dim)
        self.source = "demo"

    def to(self, device) -> "DemoIdentity":
        self.clip.to(device)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        return self.clip.encode_image(images, preprocess="pool")


def _check_images(images) -> None:
    from models.errors import AtlasError

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise AtlasError(f"identity encode takes a [B, 3, H, W] tensor in [-1, 1], got {shape}.")


def identity_state(ckpt, path) -> dict:
    """The IR-SE state dict inside a loaded checkpoint, or a one-line error saying what the file is instead."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not an IR-SE50 state dict.")
    if isinstance(ckpt.get("state_dict"), dict) and any(str(k).startswith("encoder.") for k in ckpt["state_dict"]):
        raise CheckpointError(f"{path} is an e4e / pSp encoder checkpoint, not an ArcFace identity model; pass "
                              "model_ir_se50.pth as the identity (use the e4e file with --encoder).")
    if "g_ema" in ckpt or "style.1.weight" in ckpt:
        raise CheckpointError(f"{path} is a StyleGAN2 generator, not an ArcFace identity model (model_ir_se50.pth).")
    state = {k[7:] if str(k).startswith("module.") else k: v for k, v in ckpt.items()}  # DataParallel saves
    if "input_layer.0.weight" not in state or "output_layer.3.weight" not in state:
        keys = ", ".join(map(str, list(ckpt)[:3]))
        raise CheckpointError(f"{path} is not an IR-SE50 ArcFace state dict (no input_layer / output_layer; "
                              f"keys start {keys}).")
    return state


def load_identity(path, device="cpu"):
    """ArcFace IR-SE from a `model_ir_se50.pth`-layout file (weights_only), or "demo" for the shapes world."""
    if str(path) == "demo":
        from models.clip import load_clip

        return DemoIdentity(load_clip("demo", device=device))
    path = Path(path).expanduser()
    require_file(path, "identity model", ".pth file")
    state = identity_state(read_checkpoint(path), path)
    affine = "output_layer.4.weight" in state
    backbone = IRSEBackbone(irse_depth(state), affine=affine)
    load_state_strict(backbone, state, path, f"IR-SE{backbone.num_layers} ArcFace")
    return ArcFaceIdentity(backbone, source=str(path)).to(device)
