"""Varied captions for the shapes world, each with the attributes it mentions (for CLIP training).

A caption mentions a random subset of the attributes in a random phrasing ("a red circle", "a large shape
on a light background", "circle", "a photo of the small blue square."). Its `spec` row records what it
mentions (-1 = not mentioned), so a batch knows every image a caption truly describes, not only its own.
"""

from __future__ import annotations

import numpy as np

from models.demo import NEUTRAL
from shapes.world import BACKGROUNDS, COLOURS, SHAPES, SIZES, position_phrase, position_words

SPEC_FIELDS = ("shape", "colour", "size", "background", "horizontal", "vertical")
MENTION_P = dict(shape=0.7, colour=0.6, size=0.5, background=0.4, position=0.25)
TEMPLATE_P = 0.3  # share of captions wrapped in a prompt template ("a photo of the {}.")


def attribute_table(attrs: dict) -> np.ndarray:
    """[n, 6] discrete truth in SPEC_FIELDS order (positions as thirds)."""
    h, v = position_words(attrs)
    return np.stack([attrs["shape"], attrs["colour"], attrs["size"], attrs["background"], h, v], 1)


def _phrase(truth: np.ndarray, mention: np.ndarray, form: int) -> str:
    """A noun phrase without a leading article for one record; `mention` is a bool per SPEC_FIELDS entry."""
    shape, colour, size, bg, h, v = truth
    noun = SHAPES[shape] if mention[0] else NEUTRAL
    adjectives = [w for w, m in ((SIZES[size], mention[2]), (COLOURS[colour], mention[1])) if m]
    if form == 1 and len(adjectives) == 2:
        adjectives = adjectives[::-1]  # "red large circle": word order varies
    bg_phrase = f"on a {BACKGROUNDS[bg]} background" if mention[3] else ""
    pos = position_phrase(h, v) if mention[4] else ""
    if form == 2 and mention[3]:  # "dark image with a red circle"
        return " ".join(w for w in (BACKGROUNDS[bg], "image with a", *adjectives, noun, pos) if w)
    if form == 3 and mention[1] and not mention[3] and not mention[4]:  # "circle that is red"
        rest = [SIZES[size]] if mention[2] else []
        return " ".join([*rest, noun, "that is", COLOURS[colour]])
    return " ".join(w for w in (*adjectives, noun, bg_phrase, pos) if w)


def random_captions(
    attrs: dict,
    rng: np.random.Generator,
    templates: list[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """One varied caption per record, and spec [n, 6]: the truth where mentioned, -1 elsewhere."""
    truth = attribute_table(attrs)
    n = len(truth)
    m = np.stack(
        [
            rng.random(n) < MENTION_P["shape"],
            rng.random(n) < MENTION_P["colour"],
            rng.random(n) < MENTION_P["size"],
            rng.random(n) < MENTION_P["background"],
            rng.random(n) < MENTION_P["position"],
        ],
        1,
    )  # [n, 5]
    none = ~m.any(1)
    m[none, rng.integers(0, 4, int(none.sum()))] = True  # always mention something
    forms = rng.integers(0, 4, n)
    single = rng.random(n) < 0.1  # a bare word: "red", "circle", "large"
    wrap = rng.random(n) < TEMPLATE_P if templates else np.zeros(n, bool)
    texts, spec = [], np.full((n, 6), -1, dtype=np.int64)
    for i in range(n):
        mention = m[i]
        if single[i]:
            k = int(rng.choice(np.flatnonzero(mention[:3]))) if mention[:3].any() else 0
            mention = np.zeros(5, bool)
            mention[k] = True
            text = (SHAPES, COLOURS, SIZES)[k][truth[i, k]]
        else:
            text = _phrase(truth[i], mention, int(forms[i]))
        if wrap[i]:
            text = templates[int(rng.integers(0, len(templates)))].replace("{}", text)
        elif not single[i]:
            text = "a " + text
        texts.append(text)
        cols = [j for j in range(4) if mention[j]] + ([4, 5] if mention[4] else [])
        spec[i, cols] = truth[i, cols]
    return texts, spec


def matches(spec: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[n_images, n_texts] bool: caption j is true of image i (every attribute it mentions agrees)."""
    ok = (spec[None, :, :] < 0) | (spec[None, :, :] == truth[:, None, :])  # [n_img, n_txt, 6]
    return ok.all(-1)


def class_phrases() -> dict[str, list[str]]:
    """Zero-shot class phrases per attribute, in the order of the attribute's names."""
    return dict(
        colour=[f"{c} {NEUTRAL}" for c in COLOURS],
        shape=list(SHAPES),
        size=[f"{s} {NEUTRAL}" for s in SIZES],
        background=[f"{NEUTRAL} on a {b} background" for b in BACKGROUNDS],
    )


__all__ = ["SPEC_FIELDS", "attribute_table", "class_phrases", "matches", "random_captions"]
