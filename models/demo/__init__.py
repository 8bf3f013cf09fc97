"""The shipped shapes-world models: where the files are and the facts their loaders need.

`generator.pt`, `clip_config.json` + `clip.safetensors`, `identity.safetensors` and `vocabulary.txt` are
read by `load_generator("demo")`, `load_clip("demo")`, `load_identity("demo")` and the "demo" vocabulary
(see MODEL_CARD.md). The world that made them, its classifier and the trainers live in the top-level
`shapes` package.
"""

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
VOCABULARY = DEMO_DIR / "vocabulary.txt"
IDENTITY = DEMO_DIR / "identity.safetensors"
NEUTRAL = "shape"  # the world's class word (SPEC §4 neutral)

__all__ = ["DEMO_DIR", "IDENTITY", "NEUTRAL", "VOCABULARY"]
