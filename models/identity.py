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

from models.errors import CheckpointError
from models.files import read_checkpoint, require_file
from models.irse import IRSEBackbone, irse_depth, load_state_strict

# SPEC §8 / StyleCLIP criteria/id_loss.py: pool to 256, crop the face, pool to 112
ID_SIZE = 256
ID_CROP = (slice(35, 223), slice(32, 220))
ID_INPUT = 112
# The demo identity's lambda_scale (see DemoIdentity): 0.005 x 60 = 0.3, chosen on the shapes world's tuning
# samples (seed 1) among 0.1 / 0.2 / 0.3 / 0.5, and kept with CLIP augmentation (MODEL_CARD.md, "Fallbacks").
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
    """The shapes world's identity, built on the demo CLIP's image embedding (the pixel classifier stays the judge).

    mode "full" (default): the embedding itself; "the same image" means the same shape, colour, size,
    background and place, all of which it separates (100 % zero-shot, MODEL_CARD.md). Its 1 - cos moves
    about as much for a new shape as for a new colour (0.24 each on procedural images) and is 0.75 between
    random pictures. mode "appearance": ArcFace's notion, with the appearance (shape colour, background) as
    the person and the geometry (shape, size, place) as the pose: the embedding centred on the mean of 1,000
    procedural images and projected on the span of the CLIP text embeddings of the six colours and two
    backgrounds (7 dimensions); 1 - cos is 0.98 between random pictures, 0.76 for a new colour, 0.03 for a
    new shape. "both": the mean of the two cosines. Figures of each in MODEL_CARD.md ("Fallbacks").
    """

    lambda_scale = DEMO_LAMBDA_SCALE

    def __init__(self, clip, mode: str = "full", reference=None):
        from models.demo import IDENTITY
        from models.errors import AtlasError

        if mode not in ("full", "appearance", "both"):
            raise AtlasError(f"demo identity mode must be full, appearance or both, got {mode!r}.")
        self.clip = clip
        self.source = "demo"
        self.centre, self.basis = _demo_reference(clip, IDENTITY if reference is None else reference)
        self.mode = mode
        k, d = int(self.basis.shape[1]), int(clip.dim)
        self.dim = dict(full=d, appearance=k, both=d + k)[mode]

    def to(self, device) -> "DemoIdentity":
        self.clip.to(device)
        self.centre, self.basis = self.centre.to(device), self.basis.to(device)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        e = self.clip.encode_image(images, preprocess="pool")  # [B, D]
        if self.mode == "full":
            return e
        a = F.normalize((e - self.centre) @ self.basis, dim=-1)  # [B, 7]
        if self.mode == "appearance":
            return a
        return torch.cat([e, a], 1) / 2**0.5  # [B, D + 7]: cos = mean of the two cosines


def _demo_reference(clip, path) -> tuple[torch.Tensor, torch.Tensor]:
    """centre [D] and appearance basis [D, 7] shipped for the demo CLIP (written by `python -m shapes.identity`)."""
    from safetensors import safe_open

    require_file(Path(path), "demo identity reference", ".safetensors file")
    with safe_open(str(path), framework="pt") as f:
        recorded = (f.metadata() or {}).get("clip_fingerprint")
        centre, basis = f.get_tensor("centre"), f.get_tensor("basis")
    if recorded != clip.fingerprint():
        raise CheckpointError(
            f"{path} was made for another CLIP than the one given; rerun `python -m shapes.identity` after "
            "retraining the demo CLIP."
        )
    return centre, basis


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
        raise CheckpointError(
            f"{path} is an e4e / pSp encoder checkpoint, not an ArcFace identity model; pass "
            "model_ir_se50.pth as the identity (use the e4e file with --encoder)."
        )
    if "g_ema" in ckpt or "style.1.weight" in ckpt:
        raise CheckpointError(f"{path} is a StyleGAN2 generator, not an ArcFace identity model (model_ir_se50.pth).")
    state = {k[7:] if str(k).startswith("module.") else k: v for k, v in ckpt.items()}  # DataParallel saves
    if "input_layer.0.weight" not in state or "output_layer.3.weight" not in state:
        keys = ", ".join(map(str, list(ckpt)[:3]))
        raise CheckpointError(
            f"{path} is not an IR-SE50 ArcFace state dict (no input_layer / output_layer; keys start {keys})."
        )
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
