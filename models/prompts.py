"""Prompt validation shared by the CLIP wrapper and the query layer (no heavy imports: queries stay fast)."""

import unicodedata

from models.errors import PromptError


def control_characters(text: str) -> list[str]:
    """The control characters (Unicode category Cc: NUL, escape, line breaks ...) in `text`, as escapes."""
    return sorted({repr(ch)[1:-1] for ch in text if unicodedata.category(ch) == "Cc"})


def check_text(text: str, what: str) -> str:
    """PromptError when `text` holds control characters (they break storage and labels; say which and where)."""
    bad = control_characters(text)
    if bad:
        raise PromptError(
            f"{what} {text[:40]!r} holds control characters ({', '.join(bad)}); remove them "
            "(one phrase a line, plain text)."
        )
    return text


def validate_prompt(prompt) -> str:
    """The prompt stripped of surrounding whitespace; PromptError when it is not text or is empty."""
    if not isinstance(prompt, str):
        raise PromptError(f"a prompt must be text, got {type(prompt).__name__} ({str(prompt)[:40]!r}).")
    stripped = prompt.strip()
    if not stripped:
        raise PromptError("a prompt is empty or only whitespace; give a phrase such as 'smiling'.")
    return check_text(stripped, "prompt")
