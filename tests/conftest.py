"""Shared test set-up: offline model hubs, two threads, the `slow` marker, and a tiny seeded CLIP."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes more than about 10 s on two CPU cores (deselect with -m 'not slow')"
    )


def tiny_clip_config(**text_overrides) -> dict:
    """An open_clip model config small enough for tests: 32 px input, width 64, 2 layers, context 77."""
    text_cfg = {**dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2), **text_overrides}
    return dict(
        embed_dim=32, vision_cfg=dict(image_size=32, layers=2, width=64, patch_size=8, head_width=32), text_cfg=text_cfg
    )


@pytest.fixture(scope="session")
def tiny_clip():
    """A seeded random tiny ClipEmbedder (frozen, eval); share it, do not train it."""
    from models.clip import load_clip

    return load_clip(tiny_clip_config(), seed=0)
