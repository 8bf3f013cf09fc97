"""Writes the demo identity's reference (models/demo/identity.safetensors) from the world and the demo CLIP.

    python -m shapes.identity        # after retraining the demo CLIP

The "appearance" identity centres the demo CLIP's image embedding on the mean of 1,000 procedural images and
projects it on the span of the text embeddings of the six colours and two backgrounds (models/identity.py).
Both come from the world, which the networks layer must not import, so they are computed here once and
shipped beside the CLIP they belong to, with that CLIP's fingerprint.
"""

from __future__ import annotations

import numpy as np
import torch

from models.clip import load_clip
from models.demo import IDENTITY
from models.files import atomic_path
from shapes import world


@torch.no_grad()
def identity_reference(clip, num_images: int = 1000, seed: int = 0) -> dict:
    """centre [D]: the mean pooled-image embedding of procedural images; basis [D, 7]: the appearance span."""
    words = list(world.COLOURS) + [f"{b} background" for b in world.BACKGROUNDS]
    images, _ = world.sample(num_images, np.random.default_rng(seed))
    centre = clip.encode_image(images, preprocess="pool").mean(0)  # [D]
    t = clip.encode_text(words)  # [8, D]
    basis, _ = torch.linalg.qr((t - t.mean(0)).T)  # [D, 8]; the centred rows span 7 dimensions
    return dict(centre=centre.float().contiguous(), basis=basis[:, : len(words) - 1].float().contiguous())


def write_identity_reference(clip, path=IDENTITY) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(identity_reference(clip), str(tmp), metadata=dict(clip_fingerprint=clip.fingerprint()))


if __name__ == "__main__":
    write_identity_reference(load_clip("demo"))
    print(f"wrote {IDENTITY}")
