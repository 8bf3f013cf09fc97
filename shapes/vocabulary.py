"""The shapes world's default atlas vocabulary: attribute words, their combinations and distractors.

python -m shapes.vocabulary      # rewrites models/demo/vocabulary.txt from the world's names
"""

from __future__ import annotations

from models.demo import NEUTRAL, VOCABULARY
from models.files import atomic_path
from shapes.world import BACKGROUNDS, COLOURS, HORIZONTAL, SHAPES, SIZES, VERTICAL

# words the demo CLIP never saw in training; a good atlas ranks them below the world's own words
DISTRACTORS = (
    "dog",
    "cat",
    "car",
    "face",
    "tree",
    "house",
    "water",
    "music",
    "smiling",
    "hair",
    "happy",
    "night",
    "pink",
    "white",
    "black",
    "brown",
    "grey",
    "striped",
    "hexagon",
    "star",
    "heart",
    "moon",
    "rectangle",
    "oval",
    "blurry",
    "text",
)


def default_vocabulary() -> list[str]:
    """Phrases, unique, in a stable order: single words, pairs, triples, backgrounds and positions, distractors."""
    out: list[str] = [NEUTRAL, *COLOURS, *SHAPES, *SIZES, "big", "tiny"]
    out += [f"{b} background" for b in BACKGROUNDS] + [f"{NEUTRAL} on a {b} background" for b in BACKGROUNDS]
    out += [*HORIZONTAL[::2], *VERTICAL[::2], "center"]
    out += [f"{NEUTRAL} on the {h}" for h in HORIZONTAL[::2]] + [f"{NEUTRAL} at the {v}" for v in VERTICAL[::2]]
    out += [f"{NEUTRAL} in the center"]
    out += [f"{c} {NEUTRAL}" for c in COLOURS] + [f"{s} {NEUTRAL}" for s in SIZES]
    out += [f"{c} {s}" for c in COLOURS for s in SHAPES]
    out += [f"{z} {s}" for z in SIZES for s in SHAPES]
    out += [f"{s} on a {b} background" for s in SHAPES for b in BACKGROUNDS]
    out += [f"{z} {c} {s}" for z in SIZES for c in COLOURS for s in SHAPES]
    out += list(DISTRACTORS)
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def write_vocabulary(path=VOCABULARY) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(default_vocabulary()) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_vocabulary()
