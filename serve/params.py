"""Query parameters of the web API, checked against limits: one-line errors (4xx), never a traceback.

A request is a view of the page: the current edit (prompt, neutral, beta, alpha, channels turned off),
the accepted edits stacked under it, and the images it is applied to (seeds or uploaded latents).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from models.errors import AtlasError
from models.numbers import check_finite
from query.direction import DEFAULT_BETA

MAX_PROMPT_CHARS = 300  # CLIP reads 77 tokens; a composition of a few phrases fits
MAX_SOURCES = 16  # images (seeds + latents) in one request
MAX_ALPHAS = 15  # columns of an alpha strip
MAX_RENDERS = 64  # images synthesised for one request (sources x alphas)
MAX_ABS_ALPHA = 100.0  # the sliders span -10..10; StyleCLIP's GUI -15..25
MAX_STACK = 8  # accepted edits under the current one
MAX_OFF = 4096  # channels turned off in one edit
MAX_UPLOAD_BYTES = 16 << 20  # a latent file (FFHQ W+ is 36 KB a code)
MAX_CELL = 1024  # pixels of one image cell
MAX_K = 100  # words / suggestions in one answer
MAX_SEED = 2**32 - 1
METHODS = ("global", "mapper", "optimize", "auto")  # SPEC §5-§7; all but global run as jobs (POST /api/edit)
MAX_OPTIMIZE_STEPS = 300  # optimization steps of one web edit (the reference's count); default 20
MAX_INVERT_STEPS = 500  # inversion steps of one uploaded image; default 100
MAX_IMAGE_PIXELS = 4096 * 4096  # an uploaded image, decoded


class RequestError(AtlasError):
    """A request the API refuses; `status` is its HTTP status (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EditSpec:
    """One edit: alpha times the global direction of prompt (neutral, beta / top_k), less the channels in off."""

    prompt: str = ""
    neutral: str = ""
    beta: float | str = DEFAULT_BETA
    top_k: int | None = None
    alpha: float = 0.0
    off: tuple = ()  # ((layer, channel), ...) left out of the edit

    def key(self) -> tuple:
        return (self.prompt, self.neutral, self.beta, self.top_k)

    def to_dict(self) -> dict:
        return dict(
            prompt=self.prompt,
            neutral=self.neutral,
            beta=self.beta,
            top_k=self.top_k,
            alpha=self.alpha,
            off=[list(o) for o in self.off],
        )


@dataclass(frozen=True)
class View:
    """The current edit, the accepted edits stacked under it, and the method that applies them."""

    edit: EditSpec
    stack: tuple = ()  # (EditSpec, ...)
    method: str = "global"


def prompt_value(text, what: str = "prompt", required: bool = False) -> str:
    text = "" if text is None else str(text)
    if len(text) > MAX_PROMPT_CHARS:
        raise RequestError(
            f"the {what} is {len(text):,} characters; the page takes at most {MAX_PROMPT_CHARS} "
            "(CLIP reads about 77 tokens)."
        )
    text = text.strip()
    if required and not text:
        raise RequestError(f"the {what} is empty; give a phrase such as 'red'.")
    return text


def float_value(text, what: str, default: float, low: float, high: float) -> float:
    if text is None or str(text).strip() == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise RequestError(f"{what} must be a number, got {str(text)[:40]!r}.") from None
    check_finite(value, what)
    if not low <= value <= high:
        raise RequestError(f"{what} must be between {low:g} and {high:g}, got {value:g}.")
    return value


def int_value(text, what: str, default: int | None, low: int, high: int) -> int | None:
    if text is None or str(text).strip() == "":
        return default
    try:
        value = int(str(text).strip())
    except ValueError:
        raise RequestError(f"{what} must be a whole number, got {str(text)[:40]!r}.") from None
    if not low <= value <= high:
        raise RequestError(f"{what} must be between {low} and {high:,}, got {value:,}.")
    return value


def beta_value(text):
    """'auto' or a number in (0, 1), as the CLI's --beta."""
    from query.direction import parse_beta as parse

    if text is None or str(text).strip() == "":
        return DEFAULT_BETA
    if len(str(text)) > 40:
        raise RequestError("beta must be a number in (0, 1) or 'auto'.")
    return parse(str(text))


def alpha_value(text, default: float = 0.0) -> float:
    return float_value(text, "alpha", default, -MAX_ABS_ALPHA, MAX_ABS_ALPHA)


def off_value(text) -> tuple:
    """'3:12,5:7' -> ((3, 12), (5, 7)): channels left out of the edit."""
    if not text:
        return ()
    parts = [p for p in str(text).split(",") if p.strip()]
    if len(parts) > MAX_OFF:
        raise RequestError(f"{len(parts):,} channels turned off; at most {MAX_OFF:,} in one edit.")
    out = []
    for part in parts:
        try:
            layer, channel = (int(v) for v in part.split(":"))
        except ValueError:
            raise RequestError(f"a channel is written layer:channel (e.g. 3:12), got {part.strip()[:40]!r}.") from None
        out.append((layer, channel))
    return tuple(sorted(set(out)))


def edit_spec(q, required: bool = False) -> EditSpec:
    """The current edit from query parameters prompt, neutral, beta, top_k, alpha (4 as in the CLI), off."""
    prompt = prompt_value(q.get("prompt"), required=required)
    return EditSpec(
        prompt=prompt,
        neutral=prompt_value(q.get("neutral"), "neutral prompt"),
        beta=beta_value(q.get("beta")),
        top_k=int_value(q.get("top_k"), "top_k", None, 1, 100_000),
        alpha=alpha_value(q.get("alpha"), 4.0 if prompt else 0.0),
        off=off_value(q.get("off")),
    )


def stack_value(text) -> tuple:
    """stack=[{"prompt": "red", "alpha": 4, "beta": "auto", "neutral": "", "off": "3:12"}, ...] (JSON)."""
    if not text:
        return ()
    if len(text) > MAX_STACK * (2 * MAX_PROMPT_CHARS + 200) + 12 * MAX_OFF:
        raise RequestError(f"the stack parameter is {len(text):,} characters; too long for {MAX_STACK} edits.")
    try:
        items = json.loads(text)
    except ValueError:
        raise RequestError('stack must be a JSON list of edits like [{"prompt": "red", "alpha": 4}].') from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise RequestError('stack must be a JSON list of edits like [{"prompt": "red", "alpha": 4}].')
    if len(items) > MAX_STACK:
        raise RequestError(f"{len(items)} accepted edits; at most {MAX_STACK} can be stacked.")
    out = []
    for item in items:
        off = item.get("off")
        if isinstance(off, list):
            off = ",".join(f"{o[0]}:{o[1]}" if isinstance(o, list) and len(o) == 2 else str(o) for o in off)
        out.append(
            edit_spec(
                dict(
                    prompt=item.get("prompt"),
                    neutral=item.get("neutral"),
                    beta=item.get("beta"),
                    top_k=item.get("top_k"),
                    alpha=item.get("alpha"),
                    off=off,
                ),
                required=True,
            )
        )
    return tuple(out)


def view_value(q) -> View:
    method = (q.get("method") or "global").strip().lower()
    if method not in METHODS:
        raise RequestError(f"method {method[:20]!r} is not one of {', '.join(METHODS)}.")
    return View(edit=edit_spec(q), stack=stack_value(q.get("stack")), method=method)


def sources_value(q) -> list[tuple]:
    """('seed', n) for every seed=N (repeatable, or comma lists) and ('latent', id, i) for every latent=ID:I."""
    out = []
    for name in ("seed", "latent"):
        for text in q.getlist(name):
            parts = [p.strip() for p in str(text).split(",") if p.strip()]
            if len(out) + len(parts) > MAX_SOURCES:
                raise RequestError(f"too many images in one request; at most {MAX_SOURCES} seeds and latents.")
            for p in parts:
                if name == "seed":
                    out.append(("seed", int_value(p, "seed", 0, 0, MAX_SEED)))
                else:
                    ident, _, i = p.partition(":")
                    out.append(("latent", ident, int_value(i or "0", "latent index", 0, 0, 1_000_000)))
    return out or [("seed", 0)]


def alphas_value(text, default: str = "-10:10:7") -> list[float]:
    """'-10:10:7' or '-4,0,4' (as the CLI's --alpha), at most MAX_ALPHAS values within the alpha limit."""
    from query.media import parse_alphas

    text = default if text is None or not str(text).strip() else str(text)
    if len(text) > 400:
        raise RequestError("alphas is too long; write start:stop:count, e.g. -10:10:7.")
    parts = text.split(":")
    if len(parts) == 3:
        int_value(parts[2], "the number of alphas", 1, 1, MAX_ALPHAS)
    alphas = parse_alphas([text])
    if len(alphas) > MAX_ALPHAS:
        raise RequestError(f"{len(alphas)} alphas; a strip has at most {MAX_ALPHAS}.")
    for a in alphas:
        alpha_value(a)
    return alphas


def json_text(obj) -> str:
    """JSON for numpy-holding objects: the CLI's --json text, on one line."""
    from models.cli import json_text as text

    return text(obj, indent=None)
