"""The shapes world: a procedural 32x32 image world with a tiny StyleGAN2 and a tiny CLIP trained on it.

`world` renders images with known attributes and captions, `classifier` reads the attributes back from
pixels; `generator.pt`, `clip_config.json` + `clip.safetensors` and `vocabulary.txt` are the shipped models
(see MODEL_CARD.md).
"""
from pathlib import Path

from models.demo.world import NEUTRAL

DEMO_DIR = Path(__file__).resolve().parent
VOCABULARY = DEMO_DIR / "vocabulary.txt"

__all__ = ["DEMO_DIR", "NEUTRAL", "VOCABULARY"]
