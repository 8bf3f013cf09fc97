"""Prompts as people type them: vocabulary look-up, nearest phrases, compositions, prompt files."""

from __future__ import annotations

import math
import re

from models.errors import PromptError
from models.prompts import read_lines, validate_prompt

# nan / inf are matched as weights so that they are refused as weights, not embedded as phrases ("red:nan")
_WEIGHT = re.compile(
    r"^(?P<prompt>.*?)\s*:\s*"
    r"(?P<weight>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity))\s*$",
    re.I,
)
_PLUS = re.compile(r"(?<!:)\s*\+\s*(?![\d.])")  # a '+' joining terms, not the sign of a weight (":+1")


def lookup_key(phrase: str) -> str:
    """CLIP's tokenizer lowercases and collapses whitespace, so these spellings embed identically."""
    return " ".join(phrase.split()).lower()


def is_composition(text: str) -> bool:
    """'smile:1 + curly hair:0.5' or 'smile + curly hair' (a '+' between terms, or a ':weight' suffix)."""
    parts = _PLUS.split(text.strip())
    if any(not part.strip() for part in parts):  # 'C++' is a phrase, not a sum of empty terms
        return False
    return len(parts) > 1 or _WEIGHT.match(text) is not None


def parse_composition(spec) -> list[tuple[str, float]]:
    """'smile:1 + curly hair:0.5' (or a list of (prompt, weight) / prompts) -> [(prompt, weight)]."""
    if isinstance(spec, str):
        terms = []
        for part in _PLUS.split(spec.strip()):
            m = _WEIGHT.match(part)
            prompt, weight = (m.group("prompt"), float(m.group("weight"))) if m else (part, 1.0)
            terms.append((prompt, weight))
    else:
        terms = [(item, 1.0) if isinstance(item, str) else tuple(item) for item in spec]
    out = []
    for item in terms:
        if len(item) != 2:
            raise PromptError(f"a composition term is (prompt, weight), got {item!r}.")
        prompt, weight = item
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise PromptError(f"the weight of {prompt!r} is not a number ({weight!r}).") from None
        if not math.isfinite(weight):
            raise PromptError(f"the weight of {prompt!r} must be finite, got {weight}.")
        out.append((validate_prompt(prompt), weight))
    if not out:
        raise PromptError("a composition needs at least one prompt, e.g. 'smile:1 + curly hair:0.5'.")
    return out


def format_composition(terms) -> str:
    return " + ".join(f"{p}:{w:g}" for p, w in terms)


def _grams(text: str, n: int = 3) -> set:
    t = f"  {lookup_key(text)} "
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def nearest_phrases(prompt: str, vocab: list[str], k: int = 5) -> list[str]:
    """The k vocabulary phrases most alike in spelling (Dice overlap of character trigrams)."""
    q = _grams(prompt)
    scored = []
    for i, phrase in enumerate(vocab):
        g = _grams(phrase)
        scored.append((-2 * len(q & g) / max(len(q) + len(g), 1), i))
    scored.sort()
    return [vocab[i] for _, i in scored[:k]]


def read_prompts(path) -> list[str]:
    """Prompts from a UTF-8 text file, one a line (blank lines and '#' comment lines skipped)."""
    return read_lines(path, "prompt file", "prompt")
