"""Prompt validation shared by the CLIP wrapper and the query layer (no heavy imports: queries stay fast)."""
from models.errors import PromptError


def validate_prompt(prompt) -> str:
    """The prompt stripped of surrounding whitespace; PromptError when it is not text or is empty."""
    if not isinstance(prompt, str):
        raise PromptError(f"a prompt must be text, got {type(prompt).__name__} ({str(prompt)[:40]!r}).")
    stripped = prompt.strip()
    if not stripped:
        raise PromptError("a prompt is empty or only whitespace; give a phrase such as 'smiling'.")
    return stripped
