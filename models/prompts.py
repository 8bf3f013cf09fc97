"""Prompt validation and the reader of the text files people write (templates, vocabularies, prompts).

Shared by the CLIP wrapper, the pipeline and the query layer; no heavy imports, so queries stay fast.
"""

import unicodedata

from models.errors import AtlasError, PromptError


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


def read_lines(path, what: str, item: str, also: str = "") -> list[str]:
    """The entries of a UTF-8 text file, one a line: stripped; blank lines and `#` comment lines skipped.

    The one rule for every list a person writes (templates, vocabulary, prompts): a line whose first non-blank
    character is `#` is a comment; a `#` later in a line is text. `what` names the file in errors ("vocabulary
    file"), `item` one entry ("phrase"); `also` is appended to the advice when the file does not exist.
    """
    from pathlib import Path

    path = Path(path).expanduser()
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark is not part of the first line
    except FileNotFoundError:
        raise AtlasError(f"{what} {path} does not exist; check the path{also}.") from None
    except IsADirectoryError:
        raise AtlasError(f"{what} {path} is a folder; pass a text file with one {item} a line.") from None
    except UnicodeDecodeError as exc:
        raise AtlasError(
            f"{what} {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8, one {item} a line."
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise AtlasError(f"{what} {path} has no {item}s; write one {item} a line ('#' starts a comment line).")
    return lines
