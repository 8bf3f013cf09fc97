"""The shapes world: a procedural 32x32 image world with a tiny StyleGAN2 and a tiny CLIP trained on it.

`world` renders images with known attributes and captions, `classifier` reads the attributes back from
pixels; `generator.pt`, `clip_config.json` + `clip.safetensors` and `vocabulary.txt` are the shipped models
(see MODEL_CARD.md).
"""

import argparse
import dataclasses
from pathlib import Path

from models.demo.world import NEUTRAL

DEMO_DIR = Path(__file__).resolve().parent
VOCABULARY = DEMO_DIR / "vocabulary.txt"


def config_from_args(config_class, description: str, argv=None):
    """A trainer's config dataclass from the command line: one --flag per field, typed and defaulted like the
    field (int, float and str fields only)."""
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(config_class):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return config_class(**vars(parser.parse_args(argv)))


__all__ = ["DEMO_DIR", "NEUTRAL", "VOCABULARY"]
