"""SPEC §4 vocabulary: resolve vocabulary selectors to phrases and embed them (template-averaged t(p)).

Selectors: "demo" (models/demo/vocabulary.txt), "faces" (pipeline/data/face_attributes.txt), "english"
(whole alphabetic words of length >= 3 from CLIP's own BPE vocabulary, in merge order — roughly frequency
order — without stop words, capped at english_size), "default" ("demo" when the neutral is "shape", else
"faces" + "english"), a path to a UTF-8 file (one phrase a line, '#' comments), or a list of phrases.
Combinations are concatenated in order and de-duplicated.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from index.io import read_npz, write_npz_atomic
from index.work import chunk_path, missing_chunks, neutral_path
from models.errors import AtlasError
from models.prompts import read_lines
from pipeline.common import bar, chunk_ranges
from pipeline.config import VocabularyConfig

STAGE = "vocabulary"
DATA = Path(__file__).resolve().parent / "data"
FACE_ATTRIBUTES = DATA / "face_attributes.txt"
PROGRESS_TEXTS = 4  # text batches per encode call (per progress step)
FUNCTION_WORDS = DATA / "function_words.txt"  # about, after, other ...: left out of the `english` selector
# Function words, and frequent word-final BPE pieces that are suffixes rather than words.
STOP_WORDS = set(
    """the and for you with this that from are was will can just have your our not but all out
one now new what when who how why has had her his she him they them their there here then than been were
get got its into over more most some any very also too via per amp etc lol omg let yes yet
ing ers ent ght ere ter ation ill ver ate ity ons ine ack ure ood tion ther ard ning ally ful ness ment ies
ted ous ive ish est ance ence ings ately ically ization ional less able ible ting ding ving ying ling ming
ping bing ster sion ture ments ship ably ened ating ations ition itions ening ously ized ising izing isation
ual ity ities ary ory ery ance ancy ency ians ian ists ism ology ologist ame ays ite ace ell ong ound ould ars
ents ans ase ight onal ated ool als ach ile ough ner ves ort ily ats mber ins ble ley ick ved ited ical kes sic
ors les ans der don ton res""".split()
)
# Letter pairs no English word starts with: a token starting with one is the tail of a longer word.
BAD_ONSETS = (
    "bb",
    "bd",
    "bt",
    "cc",
    "ck",
    "ct",
    "dd",
    "dg",
    "dn",
    "ff",
    "ft",
    "gg",
    "gn",
    "gt",
    "lb",
    "lc",
    "ld",
    "lf",
    "lk",
    "ll",
    "lm",
    "lp",
    "ls",
    "lt",
    "lv",
    "mb",
    "mm",
    "mn",
    "mp",
    "ms",
    "nc",
    "nd",
    "ng",
    "nk",
    "nn",
    "ns",
    "nt",
    "pp",
    "pt",
    "rb",
    "rc",
    "rd",
    "rf",
    "rg",
    "rk",
    "rl",
    "rm",
    "rn",
    "rp",
    "rr",
    "rs",
    "rt",
    "rv",
    "ss",
    "tt",
    "tz",
    "xt",
    "zz",
)


def read_phrase_file(path) -> list[str]:
    """Phrases from a UTF-8 text file, one a line; blank lines and lines starting with '#' are skipped."""
    return read_lines(path, "vocabulary file", "phrase", also=", or use one of demo, english, faces")


def english_words(size: int) -> list[str]:
    """Up to `size` whole English-looking words from the BPE vocabulary shipped with open_clip."""
    import open_clip

    bpe = Path(open_clip.__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz"
    if not bpe.exists():
        raise AtlasError(f"open_clip's BPE vocabulary {bpe} is missing; reinstall open_clip_torch.")
    lines = gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")[1 : 49152 - 256 - 2 + 1]
    function_words = set(" ".join(read_phrase_file(FUNCTION_WORDS)).split())
    words, seen = [], set(function_words)
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].endswith("</w>"):
            continue
        word = (parts[0] + parts[1])[:-4]
        if (
            len(word) >= 3
            and word.isascii()
            and word.isalpha()
            and word not in STOP_WORDS
            and any(v in word for v in "aeiouy")
            and not word.startswith(BAD_ONSETS)
            and word not in seen
        ):
            seen.add(word)
            words.append(word)
            if len(words) >= size:
                break
    return words


def resolve(selectors, english_size: int, neutral: str) -> list[str]:
    """Selectors -> ordered phrases (whitespace collapsed), de-duplicated by how CLIP reads them (case, spaces).

    A phrase with control characters is refused here, when the plan is made, not at assembly.
    """
    from models.prompts import check_text

    phrases = []
    for sel in selectors:
        if isinstance(sel, (list, tuple)):
            if not all(isinstance(p, str) for p in sel):
                raise AtlasError("a vocabulary list must hold only strings (phrases).")
            phrases += list(sel)
        elif sel == "default":
            phrases += resolve(["demo"] if neutral == "shape" else ["faces", "english"], english_size, neutral)
        elif sel == "demo":
            from models.demo import VOCABULARY

            if not Path(VOCABULARY).exists():
                raise AtlasError(
                    f"the demo vocabulary {VOCABULARY} is missing; reinstall StyleAtlas or pass "
                    "--vocabulary faces / english / a file."
                )
            phrases += read_phrase_file(VOCABULARY)
        elif sel == "faces":
            phrases += read_phrase_file(FACE_ATTRIBUTES)
        elif sel == "english":
            phrases += english_words(english_size)
        elif isinstance(sel, str):
            phrases += read_phrase_file(sel)
        else:
            raise AtlasError(
                f"vocabulary selector {sel!r} is not understood; use demo, english, faces, a file "
                "path, or a list of phrases."
            )
    out, seen = [], set()
    for p in phrases:
        p = " ".join(str(p).split())
        key = p.lower()  # query/prompts.lookup_key: the tokenizer lowercases, so "Red" and "red" are one phrase
        if p and key not in seen:
            check_text(p, "vocabulary phrase")
            seen.add(key)
            out.append(p)
    if not out:
        raise AtlasError("the vocabulary is empty; pass --vocabulary with at least one phrase.")
    return out


def describe(selectors) -> list:
    """Selectors as JSON-friendly values for the stored config (a long list is summarised by its hash)."""
    out = []
    for sel in selectors:
        if isinstance(sel, (list, tuple)):
            text = json.dumps(list(sel))
            out.append(
                list(sel)
                if len(sel) <= 50
                else f"list of {len(sel)} phrases, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}"
            )
        else:
            out.append(str(sel))
    return out


def run(
    embedder,
    phrases: list[str],
    templates: list[str],
    neutral: str,
    cfg: VocabularyConfig,
    out_dir,
    chunks: list[int],
    show: bool,
) -> int:
    """Embed the given vocabulary chunks that are missing (and t(neutral)); return the number of texts encoded."""
    from models.text import embed_phrases

    ranges = chunk_ranges(len(phrases), cfg.chunk_phrases)
    todo = missing_chunks(out_dir, STAGE, len(ranges), among=chunks)
    texts = 0
    if not neutral_path(out_dir).exists():
        t_neutral = embed_phrases(embedder, [neutral], templates, batch_size=cfg.text_batch_size)[0]  # [D]
        write_npz_atomic(neutral_path(out_dir), embedding=t_neutral.float().cpu().numpy())
        texts += len(templates)
    # a few text batches per encode call: the bar moves every ~1,000 encodes (a chunk is 20,000 at 79 templates),
    # and each call still holds enough texts for the encoder to bucket them by length
    group = max(1, PROGRESS_TEXTS * cfg.text_batch_size // max(len(templates), 1))
    with bar(sum(b - a for a, b in (ranges[i] for i in todo)), "vocabulary", "phrase", show) as pbar:
        for i in todo:
            a, b = ranges[i]
            parts = []
            for g in range(a, b, group):
                with torch.no_grad():
                    parts.append(
                        embed_phrases(
                            embedder, phrases[g : min(g + group, b)], templates, batch_size=cfg.text_batch_size
                        )
                        .float()
                        .cpu()
                    )  # [n, D]
                pbar.update(min(g + group, b) - g)
            write_npz_atomic(chunk_path(out_dir, STAGE, i), embeddings=torch.cat(parts).numpy())
            texts += (b - a) * len(templates)
    return texts


def load(out_dir, num_phrases: int, cfg: VocabularyConfig) -> tuple[np.ndarray, np.ndarray]:
    """vocab embeddings [V, D] float32 and t(neutral) [D] from the work folder."""
    parts = [
        read_npz(chunk_path(out_dir, STAGE, i))["embeddings"]
        for i in range(len(chunk_ranges(num_phrases, cfg.chunk_phrases)))
    ]
    return np.concatenate(parts).astype(np.float32), read_npz(neutral_path(out_dir))["embedding"].astype(np.float32)
