"""Stored fingerprints keep their bytes: the demo models hash to the digests atlases already hold.

The digests below were computed on commit 68a44a8 (before the three state-dict hashers became one helper,
models/files.py `hash_tensors`). The first and third are also what every atlas built from the demo models
with the default templates stores (atlas.h5 attributes `generator_fingerprint` / `embedder_fingerprint`,
read from atlases built on that commit), and the second is what models/demo/identity.safetensors records
as `clip_fingerprint`. If one of these changes, existing atlases stop opening with their models.
The two generator digests are those of the generator shipped by shapes.demo_recipe's five phases (issue 17),
computed by the same rule, which still gives the old digests for the generators shipped before it (stages 1-4:
1526724373d8..., state:dd30399b5568...; the three-phase recipe: fac0f2fbc657..., state:4f6771412fd8...; the
four-phase recipe, P3: bb9412eb9c55..., state:d0dd0a478bc5...): atlases built on an old generator are refused
with the new one, as they must be.
"""

import types

import torch

from index.fingerprint import fingerprint_embedder, fingerprint_generator
from models.clip import load_clip
from models.stylegan2 import load_generator
from models.text import load_templates

DEMO_GENERATOR = "12a0148ffbbe2bef1ca25e4f3e4ac9bbe4cba0a26cce64aedb920670958d941b"  # StyleGAN2 "{k}:{dtype}:{shape}"
DEMO_CLIP = "dc10cf77ad6cea2b8eb31d301c639de1df70d111b95dc8b221f58900121ff81e"  # ClipEmbedder "{k}|{dtype}|{shape}|"
DEMO_CLIP_WITH_TEMPLATES = "0939c5816976800a718f299051125b7b4c60a0a4c57296e33f62366e6069e7c4"
# index/fingerprint.py's rule for modules without a fingerprint() of their own (the state dict alone)
DEMO_GENERATOR_STATE = "state:c34f05f532f8c7af0b5eb1557e689964a8520d32558e11c20caa43378abbdba8"
DEMO_CLIP_STATE_WITH_BRACES = "52cdaadfef2c60819ebdceb18635c55d5a1f965a524b57ceed0c99afd165661b"


class _Plain(torch.nn.Module):
    """A module without fingerprint(): its hash is the state-dict rule's."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.g = inner


def test_demo_digests_equal_those_stored_in_existing_atlases():
    gen, clip = load_generator("demo"), load_clip("demo")
    assert gen.fingerprint() == DEMO_GENERATOR
    assert fingerprint_generator(gen) == DEMO_GENERATOR
    assert clip.fingerprint() == DEMO_CLIP
    assert fingerprint_embedder(clip, load_templates()) == DEMO_CLIP_WITH_TEMPLATES
    assert fingerprint_generator(_Plain(gen)) == DEMO_GENERATOR_STATE
    bare = types.SimpleNamespace(model=clip.model, dim=clip.dim)  # an embedder known only by its .model
    assert fingerprint_embedder(bare, ["{}"]) == DEMO_CLIP_STATE_WITH_BRACES


def test_a_changed_weight_changes_the_digest():
    gen = load_generator("demo")
    with torch.no_grad():
        next(gen.parameters()).view(-1)[0] += 1e-3
    assert gen.fingerprint() != DEMO_GENERATOR
    assert fingerprint_generator(_Plain(gen)) != DEMO_GENERATOR_STATE
