"""The text side of SPEC §4: prompt templates, template-averaged phrase embeddings t(p), text directions Δt."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
import torch.nn.functional as F

from models.directions import delta_t
from models.errors import AtlasError, PromptError
from models.prompts import read_lines, validate_prompt

DEFAULT_TEMPLATES = Path(__file__).resolve().parent / "data" / "templates_imagenet79.txt"

__all__ = ["DEFAULT_TEMPLATES", "embed_phrases", "load_templates", "text_direction"]


def load_templates(path=None) -> list[str]:
    """Prompt templates, one a line (`#` comment lines skipped), `{}` standing for the phrase; ImageNet 79 default."""
    path = Path(path).expanduser() if path is not None else DEFAULT_TEMPLATES
    templates = read_lines(path, "template file", "template")
    for n, template in enumerate(templates, 1):
        if "{}" not in template:
            raise AtlasError(
                f"template {n} of {path} ({template[:40]!r}) has no '{{}}' where the phrase goes; "
                "add it, e.g. 'a photo of a {}.'."
            )
    return templates


def _fill(template: str, phrase: str) -> str:
    # replace, not str.format: a template may contain other braces, a phrase may contain anything
    return template.replace("{}", phrase)


def embed_phrases(embedder, phrases, templates=None, batch_size: int = 256) -> torch.Tensor:
    """[N, D] t(p) for every phrase p: each template embedding unit-normalised, averaged, re-normalised.

    All N x T texts go to `embedder.encode_text` together (in batches of `batch_size`), so the encoder can
    bucket by length across phrases. `templates` is a list of templates or a template file path.
    """
    if isinstance(phrases, str):
        raise PromptError("embed_phrases takes a list of phrases, not one string; wrap it as [phrase].")
    phrases = [validate_prompt(p) for p in phrases]
    if isinstance(templates, str) and "{}" in templates and not Path(templates).expanduser().exists():
        raise AtlasError("templates is one template string; pass a list of templates or a template file path.")
    if templates is None or isinstance(templates, (str, Path)):
        templates = load_templates(templates)
    templates = list(templates)
    if not templates or any(not isinstance(t, str) or "{}" not in t for t in templates):
        raise AtlasError("every template must be text containing '{}' where the phrase goes.")
    texts = [_fill(t, p) for p in phrases for t in templates]  # phrase-major: N x T
    if not phrases:
        return torch.zeros(0, embedder.dim)
    if _takes_batch_size(embedder):  # one call: the encoder buckets all N x T texts by length itself
        emb = embedder.encode_text(texts, batch_size=batch_size)
    else:
        emb = torch.cat([embedder.encode_text(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])
    emb = F.normalize(emb.float(), dim=-1).view(len(phrases), len(templates), -1)  # [N, T, D]
    return F.normalize(emb.mean(dim=1), dim=-1)  # [N, D]


def _takes_batch_size(embedder) -> bool:
    try:
        return "batch_size" in inspect.signature(embedder.encode_text).parameters
    except (TypeError, ValueError):
        return False


def text_direction(t_target: torch.Tensor, t_neutral: torch.Tensor) -> torch.Tensor:
    """Δt = normalise(t(target) - t(neutral)) (SPEC §4) for tensors [D] or [N, D]: models/directions.py's delta_t."""
    as_numpy = [t.detach().float().cpu().numpy() for t in (t_target, t_neutral)]
    return torch.from_numpy(delta_t(*as_numpy)).to(t_target.device)
