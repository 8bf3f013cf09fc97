"""Content fingerprints of the two models an atlas was built with, so it is never queried with others.

Generator: `generator.fingerprint()` when it has one (StyleGAN2: sha256 of the weights); else the sha256 of
an nn.Module's state dict; else the sha256 of what the protocol lets us observe on a fixed probe (layer
widths, mean_w, and the styles and images of four seeded z, rounded to 4 decimals so that the last bits of
float noise between machines do not change it). Embedder: the same rule (`fingerprint()`, state dict of
`.model` or of the object, or a probe of encode_text / encode_image), always combined with the templates,
because the stored phrase embeddings depend on them. `check_fingerprints` compares both with an atlas's.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from models.errors import AtlasFormatError
from models.files import hash_tensors

PROBE_TEXTS = ("a photo of a face.", "red", "a smiling person with curly hair", "shape")
PROBE_DECIMALS = 4


def _hash_state_dict(state: dict) -> str:
    h = hashlib.sha256()
    hash_tensors(h, state)
    return h.hexdigest()


def _hash_rounded(h, x) -> None:
    a = np.round(torch.as_tensor(x).detach().double().cpu().numpy(), PROBE_DECIMALS) + 0.0  # -0.0 -> 0.0
    h.update(str(a.shape).encode())
    h.update(a.tobytes())


def _own_fingerprint(obj) -> str | None:
    fp = getattr(obj, "fingerprint", None)
    if callable(fp):
        return str(fp())
    if isinstance(obj, torch.nn.Module):
        return "state:" + _hash_state_dict(obj.state_dict())
    return None


@torch.no_grad()
def fingerprint_generator(gen) -> str:
    """A content hash of a generator (see the module docstring for the rule)."""
    own = _own_fingerprint(gen)
    if own is not None:
        return own
    h = hashlib.sha256(b"generator-probe-v1|")
    h.update(
        json.dumps(
            [
                int(gen.z_dim),
                int(gen.w_dim),
                [int(d) for d in gen.style_dims],
                [int(i) for i in getattr(gen, "rgb_layers", [])],
            ]
        ).encode()
    )
    mean_w = getattr(gen, "mean_w", None)
    if mean_w is not None:
        _hash_rounded(h, mean_w)
    device = torch.as_tensor(mean_w).device if mean_w is not None else torch.device("cpu")
    z = torch.randn(4, int(gen.z_dim), generator=torch.Generator().manual_seed(20210401)).to(device)  # [4, z]
    styles = [torch.as_tensor(s) for s in gen.styles(gen.mapping(z))]
    for s in styles:
        _hash_rounded(h, s)
    _hash_rounded(h, gen.synthesize(styles, noise_mode="const"))
    return "probe:" + h.hexdigest()


@torch.no_grad()
def fingerprint_embedder(embedder, templates) -> str:
    """A content hash of an embedder (weights + preprocessing, or a probe) together with the templates."""
    own = _own_fingerprint(embedder)
    if own is None and isinstance(getattr(embedder, "model", None), torch.nn.Module):
        own = "state:" + _hash_state_dict(embedder.model.state_dict())
    if own is None:
        h = hashlib.sha256(b"embedder-probe-v1|")
        h.update(str(int(embedder.dim)).encode())
        _hash_rounded(h, embedder.encode_text(list(PROBE_TEXTS)))
        size = int(getattr(embedder, "image_size", 32) or 32)
        g = torch.Generator().manual_seed(20210402)
        images = torch.rand(2, 3, size, size, generator=g) * 2 - 1  # [2, 3, S, S] in [-1, 1]
        _hash_rounded(h, embedder.encode_image(images))
        own = "probe:" + h.hexdigest()
    h = hashlib.sha256()
    h.update(own.encode())
    h.update(b"|templates|")
    h.update(json.dumps(list(templates)).encode("utf-8"))
    return h.hexdigest()


def architecture_embedder(embedder) -> str:
    """What an embedder computes with besides its weights (model config, module classes); "" when unknown.

    Kept apart from the embedder fingerprint so that atlases written before it was recorded still open.
    """
    own = getattr(embedder, "architecture", None)
    if callable(own):
        return str(own())
    model = embedder if isinstance(embedder, torch.nn.Module) else getattr(embedder, "model", None)
    if isinstance(model, torch.nn.Module):
        text = json.dumps([type(m).__name__ for _, m in model.named_modules()])
        return "modules:" + hashlib.sha256(text.encode()).hexdigest()
    return ""  # a probe fingerprint already covers what the embedder does


def check_fingerprints(data, generator=None, embedder=None) -> None:
    """Refuse a generator / embedder that is not the one the atlas `data` (AtlasData) was built with.

    The error names both fingerprints; read_atlas(..., check_fingerprints=False) is the experts' way round it.
    """
    if generator is not None:
        fp = fingerprint_generator(generator)
        if fp != data.generator_fingerprint:
            raise AtlasFormatError(
                f"atlas {data.path} was built with generator {data.generator_fingerprint[:16]}… but this "
                f"generator is {fp[:16]}…; open it with the generator it was built with, or rebuild the atlas "
                "(experts: check_fingerprints=False)."
            )
    if embedder is not None:
        arch = architecture_embedder(embedder)
        if data.embedder_architecture and arch and arch != data.embedder_architecture:
            raise AtlasFormatError(
                f"atlas {data.path} was built with a CLIP of another architecture ({data.embedder_architecture[:21]}… "
                f"vs {arch[:21]}…; e.g. ViT-B-32 and ViT-B-32-quickgelu share weights but not activations); open it "
                "with the CLIP model it was built with (experts: check_fingerprints=False)."
            )
        fp = fingerprint_embedder(embedder, data.templates)
        if fp != data.embedder_fingerprint:
            raise AtlasFormatError(
                f"atlas {data.path} was built with CLIP {data.embedder_fingerprint[:16]}… (weights, preprocessing "
                f"and templates) but this embedder is {fp[:16]}…; open it with the CLIP it was built with, or "
                "rebuild the atlas (experts: check_fingerprints=False)."
            )
