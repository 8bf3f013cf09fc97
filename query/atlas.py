"""query.Atlas: global directions (SPEC §5), compositions, channel look-ups and edits over one atlas."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

import index
from models.directions import delta_t as text_delta_t
from models.directions import delta_t_rows
from models.errors import AtlasError, AtlasFormatError, CheckpointError, PromptError
from models.prompts import validate_prompt
from models.seeds import DEFAULT_PSI, seed_ws
from models.stylespace import rows_by_layer, to_layers
from query.checks import check_alpha, check_images, check_latent
from query.direction import (
    DEFAULT_BETA,
    Direction,
    check_beta,
    global_directions,
    no_channel_message,
    one_direction,
)
from query.prompts import (
    format_composition,
    is_composition,
    lookup_key,
    nearest_phrases,
    parse_composition,
)

if TYPE_CHECKING:  # torch loads for edits and new prompts only: a vocabulary query never imports it
    import torch


def no_grad(fn):
    """torch.no_grad() around fn, with torch imported at the first call rather than with this module."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapped


class Atlas:
    """An opened atlas. Directions, channel words and export need only its arrays; `edit` needs a generator.

    A prompt in the atlas vocabulary uses its stored template-averaged embedding (no CLIP); a new prompt is
    embedded with the atlas's templates by the embedder, loaded lazily when one is needed.
    `Atlas.open(folder)` reads an atlas folder; `Atlas(data)` wraps arrays already in memory (index.AtlasData).
    load_generator / load_embedder: zero-argument callables that load a model the first time one is needed.
    check_fingerprints: refuse models (given or loaded) other than those the atlas was built with; False when
    the caller vouches for them (models made for in-memory test data have no matching fingerprint).
    """

    def __init__(
        self,
        data: index.AtlasData,
        generator=None,
        embedder=None,
        *,
        load_generator=None,
        load_embedder=None,
        check_fingerprints: bool = True,
    ):
        self.data = data
        self._models = dict(generator=generator, embedder=embedder)
        self._loaders = dict(generator=load_generator, embedder=load_embedder)
        self._check = check_fingerprints
        if check_fingerprints and (generator is not None or embedder is not None):
            index.check_fingerprints(data, generator=generator, embedder=embedder)
        self._rows = {(int(l), int(c)): r for r, (l, c) in enumerate(data.channels)}
        self._vocab_exact = {p: i for i, p in enumerate(data.vocab)}
        self._vocab_key = {}
        for i, p in enumerate(data.vocab):
            self._vocab_key.setdefault(lookup_key(p), i)
        self._embedded: dict[str, np.ndarray] = {}  # new prompts embedded this session
        self._vocab_delta_t = None
        self._layer_rows = None
        self._channels = None
        self._layer_widths = None
        self._std32 = np.asarray(data.style_std, np.float32)  # [C]
        self.faiss_device = None  # "cuda": similar() searches the vocabulary index on GPUs (index/gpu.py)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls, out_dir="atlas", generator=None, embedder=None, *, require_complete: bool = True, **options
    ) -> "Atlas":
        """Read `out_dir` (AtlasFormatError when missing or partial) into an Atlas; `options` are Atlas()'s."""
        data = index.read_atlas(out_dir, require_complete=require_complete)
        return cls(data, generator, embedder, **options)

    # ------------------------------------------------------------------ CONTRACT arrays
    @property
    def channels(self) -> list[tuple[int, int]]:
        if self._channels is None:
            self._channels = [(int(l), int(c)) for l, c in self.data.channels]
        return self._channels

    @property
    def relevance(self) -> np.ndarray:
        return self.data.relevance

    @property
    def style_mean(self) -> np.ndarray:
        return self.data.style_mean

    @property
    def style_std(self) -> np.ndarray:
        return self.data.style_std

    @property
    def neutral(self) -> str:
        return self.data.neutral

    @property
    def vocab(self) -> list[str]:
        return self.data.vocab

    @property
    def layer_widths(self) -> list[int]:
        if self._layer_widths is None:
            self._layer_widths = [int(l["width"]) for l in self.data.layers]
        return self._layer_widths

    def row(self, layer: int, channel: int) -> int:
        """Row of (layer, channel) in the relevance matrix; AtlasError naming the atlas's layers otherwise."""
        r = self._rows.get((int(layer), int(channel)))
        if r is None:
            inside = [f"{l['index']} (0..{l['width'] - 1})" for l in self.data.layers if l["in_atlas"]]
            raise AtlasError(
                f"channel {channel} of layer {layer} is not in this atlas; its layers and channels "
                f"are {', '.join(inside)}."
            )
        return r

    # ------------------------------------------------------------------ models
    def _model(self, kind: str):
        """The generator or embedder: as given, or loaded (and fingerprint-checked) on first use; None if neither."""
        if self._models[kind] is None and self._loaders[kind] is not None:
            model = self._loaders[kind]()
            if self._check:
                index.check_fingerprints(self.data, **{kind: model})
            self._models[kind] = model
        return self._models[kind]

    @property
    def generator(self):
        gen = self._model("generator")
        if gen is None:
            raise AtlasError(
                "editing needs the generator the atlas was built with; pass generator= to "
                "Atlas.open (CLI: --generator PATH)."
            )
        return gen

    @property
    def embedder(self):
        return self._model("embedder")

    # ------------------------------------------------------------------ text side
    def vocab_index(self, phrase: str) -> int | None:
        """Row of `phrase` in the vocabulary (exact, else as CLIP's tokenizer sees it), or None."""
        i = self._vocab_exact.get(phrase)
        return i if i is not None else self._vocab_key.get(lookup_key(phrase))

    def text_embedding(self, phrase: str) -> np.ndarray:
        """t(phrase) [D]: stored for vocabulary phrases and the neutral, else embedded with the templates."""
        phrase = validate_prompt(phrase)
        if phrase == self.data.neutral or lookup_key(phrase) == lookup_key(self.data.neutral):
            return np.asarray(self.data.neutral_embedding, np.float32)
        i = self.vocab_index(phrase)
        if i is not None:
            return self.data.vocab_embeddings[i]
        return self.embed([phrase])[0]

    def embed(self, phrases: list[str]) -> np.ndarray:
        """[N, D] t(p) for phrases not in the vocabulary, with the atlas's templates (cached per session)."""
        todo = [p for p in dict.fromkeys(phrases) if p not in self._embedded]
        if todo:
            near = ", ".join(repr(p) for p in nearest_phrases(todo[0], self.data.vocab, 5))
            more = f" (and {len(todo) - 1} more prompts)" if len(todo) > 1 else ""
            try:
                embedder = self.embedder
            except CheckpointError as exc:  # the CLIP to load is missing: say so, and offer the vocabulary
                raise PromptError(
                    f"{todo[0]!r}{more} is not in the atlas vocabulary and its CLIP cannot be loaded "
                    f"({str(exc).rstrip('.')}); use a vocabulary phrase such as {near}."
                ) from None
            if embedder is None:
                raise PromptError(
                    f"{todo[0]!r}{more} is not in the atlas vocabulary and no CLIP is loaded to embed "
                    f"it; pass embedder= (CLI: --clip) or use a vocabulary phrase such as {near}."
                )
            import torch

            from models.text import embed_phrases

            with torch.no_grad():
                emb = embed_phrases(embedder, todo, self.data.templates)  # [N, D]
            for p, e in zip(todo, emb.detach().float().cpu().numpy()):
                self._embedded[p] = e
        return np.stack([self._embedded[p] for p in phrases]) if phrases else np.zeros((0, self.data.dim))

    def neutral_embedding(self, neutral: str = "") -> tuple[str, np.ndarray]:
        if neutral is None or (isinstance(neutral, str) and not neutral.strip()):
            return self.data.neutral, np.asarray(self.data.neutral_embedding, np.float32)
        neutral = validate_prompt(neutral)
        return neutral, self.text_embedding(neutral)

    def delta_t(self, prompt: str, neutral: str = "") -> np.ndarray:
        """Δt = normalise(t(prompt) - t(neutral)) [D] (SPEC §4)."""
        _, t_neutral = self.neutral_embedding(neutral)
        return text_delta_t(self.text_embedding(prompt), t_neutral)

    # ------------------------------------------------------------------ directions
    def direction(self, prompt, neutral: str = "", beta=DEFAULT_BETA, *, top_k: int | None = None) -> Direction:
        """The SPEC §5 global direction for `prompt` (or a composition 'smile:1 + curly hair:0.5' / list).

        beta: disentanglement threshold in (0, 1), or "auto" (largest of 0.10..0.29 keeping > 20 channels).
        top_k: keep the top_k strongest channels instead of thresholding. AtlasError when nothing is kept.
        """
        if not isinstance(prompt, str):
            return self.compose(prompt, neutral, beta, top_k=top_k)
        prompt = validate_prompt(prompt)
        if self.vocab_index(prompt) is None and prompt not in self._embedded and is_composition(prompt):
            return self.compose(prompt, neutral, beta, top_k=top_k)
        check_beta(beta)
        neutral_name, t_neutral = self.neutral_embedding(neutral)
        delta_t = text_delta_t(self.text_embedding(prompt), t_neutral)  # [D]
        if top_k is None and not isinstance(beta, str):  # a plain query: no batch machinery (query/direction.py)
            scores, delta_s, num_c, max_abs = one_direction(self.data.relevance, self._std32, delta_t, beta)
            used = float(beta)
        else:
            scores, delta_s, num_c, betas, max_abs = global_directions(
                self.data.relevance, self._std32, delta_t, beta, top_k
            )
            scores, delta_s, num_c, used, max_abs = scores[0], delta_s[0], num_c[0], float(betas[0]), max_abs[0]
        if num_c == 0:
            raise AtlasError(no_channel_message(float(max_abs), beta, prompt))
        return Direction(
            prompt=prompt,
            neutral=neutral_name,
            beta=used,
            scores=scores,
            delta_s=delta_s,
            channels=self.data.channels,
            delta_t=delta_t,
            top_k=top_k,
            layer_widths=self.layer_widths,
        )

    def compose(self, terms, neutral: str = "", beta=DEFAULT_BETA, *, top_k: int | None = None) -> Direction:
        """Σ weight_i Δs_i over the terms' own directions; reports the channels the terms share."""
        terms = parse_composition(terms)
        parts = [(p, w, self.direction(p, neutral, beta, top_k=top_k)) for p, w in terms]
        scores = sum(w * d.scores for _, w, d in parts)  # [C]
        delta_s = sum(w * d.delta_s for _, w, d in parts).astype(np.float32)  # [C]
        overlaps = []
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                overlaps.append(channel_overlap(parts[i], parts[j], self.data.channels))
        if not np.any(delta_s):
            raise AtlasError(
                f"the composition {format_composition(terms)!r} cancels out: no channel moves (a zero "
                "weight, or terms that undo each other); change the weights."
            )
        betas = {d.beta for _, _, d in parts}
        return Direction(
            prompt=format_composition(terms),
            neutral=parts[0][2].neutral,
            beta=betas.pop() if len(betas) == 1 else None,
            scores=scores,
            delta_s=delta_s,
            channels=self.data.channels,
            top_k=top_k,
            layer_widths=self.layer_widths,
            components=parts,
            overlaps=overlaps,
        )

    def channel_direction(self, layer: int, channel: int) -> Direction:
        """One channel alone, r = +1: Δs = sigma_c at that channel (what `channel` grids show)."""
        r = self.row(layer, channel)
        scores = np.zeros(len(self.data.channels), np.float32)
        scores[r] = 1.0
        return Direction(
            prompt=f"layer {layer} channel {channel}",
            neutral="",
            beta=None,
            scores=scores,
            delta_s=scores * self._std32,
            channels=self.data.channels,
            layer_widths=self.layer_widths,
        )

    # ------------------------------------------------------------------ exploration
    def channel_words(self, layer: int, channel: int, k: int = 10) -> list[tuple[str, float]]:
        """The k vocabulary phrases p with the largest relevance_c @ Δt(p, neutral): what +alpha moves toward."""
        r = self.row(layer, channel)
        dt, valid = self.vocab_delta_t()
        score = dt @ self.data.relevance[r]  # [V]
        score[~valid] = -np.inf
        k = max(0, min(int(k), int(valid.sum())))
        best = np.argsort(-score, kind="stable")[:k]
        return [(self.data.vocab[i], float(score[i])) for i in best]

    def vocab_delta_t(self) -> tuple[np.ndarray, np.ndarray]:
        """Δt(p, neutral) [V, D] for every vocabulary phrase, and which are defined (not the neutral itself)."""
        if self._vocab_delta_t is None:
            self._vocab_delta_t = delta_t_rows(self.data.vocab_embeddings, self.data.neutral_embedding)  # [V, D], [V]
        return self._vocab_delta_t

    def similar(self, prompt: str, k: int = 10) -> list[tuple[str, float]]:
        """The k vocabulary phrases nearest to t(prompt) by cosine (FAISS vocab index when present)."""
        prompt = validate_prompt(prompt)
        q = np.ascontiguousarray(self.text_embedding(prompt)[None], np.float32)  # [1, D]
        self_row = self.vocab_index(prompt)
        want = min(int(k) + (self_row is not None), len(self.data.vocab))
        faiss_index = index.load_vocab_index(self.data.path, self.faiss_device) if self.data.path else None
        if faiss_index is not None and faiss_index.ntotal == len(self.data.vocab):
            sims, ids = faiss_index.search(q, want)
            pairs = [(int(i), float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0]
        else:
            sims = self.data.vocab_embeddings @ q[0]  # [V]
            pairs = [(int(i), float(sims[i])) for i in np.argsort(-sims, kind="stable")[:want]]
        return [(self.data.vocab[i], s) for i, s in pairs if i != self_row][: int(k)]

    def channel_info(self, row: int, score: float | None = None, num_labels: int = 3) -> dict:
        layer, channel = (int(v) for v in self.data.channels[row])
        li, ls = self.data.labels_index, self.data.labels_score
        labels = (
            [(self.data.vocab[int(i)], float(s)) for i, s in zip(li[row, :num_labels], ls[row, :num_labels]) if i >= 0]
            if li.ndim == 2 and len(li)
            else []
        )
        info = dict(
            layer=layer,
            resolution=int(self.data.layers[layer]["resolution"]),
            channel=channel,
            consistency=float(self.data.consistency[row]),
            style_mean=float(self.data.style_mean[row]),
            style_std=float(self.data.style_std[row]),
            labels=labels,
        )
        if score is not None:
            info["score"] = float(score)
        return info

    # ------------------------------------------------------------------ edits
    def rows_by_layer(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """(layer, atlas rows, channels) per layer with atlas channels (models/stylespace.py), computed once."""
        if self._layer_rows is None:
            self._layer_rows = rows_by_layer(self.data.channels)
        return self._layer_rows

    def apply(self, styles: list[torch.Tensor], d, alpha: float) -> list[torch.Tensor]:
        """s + alpha Δs on the atlas's channels (toRGB and other layers untouched); new tensors, inputs kept."""
        alpha = check_alpha(alpha)
        delta_s = np.asarray(d.delta_s if isinstance(d, Direction) else d, np.float32)  # [C]
        if delta_s.shape != (len(self.data.channels),):
            raise AtlasError(
                f"a direction for this atlas has {len(self.data.channels)} values, got "
                f"{delta_s.shape}; compute it with this atlas's direction()."
            )
        if len(styles) != len(self.data.layers) or any(
            s.shape[-1] != int(l["width"]) for s, l in zip(styles, self.data.layers)
        ):
            raise AtlasFormatError(
                f"the generator's style layers do not match atlas {self.data.path}; open it "
                "with the generator it was built with."
            )
        import torch

        if not np.isfinite(alpha * delta_s).all():
            raise AtlasError(f"alpha {alpha:g} times this direction is not finite in float32; use a smaller alpha.")
        steps = to_layers(alpha * delta_s, self.data.channels, self.layer_widths, self.rows_by_layer())  # [width_l]
        out = list(styles)
        for layer, _, _ in self.rows_by_layer():  # other layers (toRGB) are passed on untouched
            s = styles[layer]
            out[layer] = s + torch.as_tensor(steps[layer], dtype=s.dtype, device=s.device)
        return out

    @no_grad
    def edit(self, ws, d, alpha: float, noise_mode: str = "const") -> torch.Tensor:
        """ws [B, num_ws, w_dim] or [B, w_dim] -> edited images [B, 3, H, W]: synthesize(styles(ws) + alpha Δs)."""
        gen = self.generator
        ws = check_latent(ws, gen)
        return check_images(gen.synthesize(self.apply(gen.styles(ws), d, alpha), noise_mode=noise_mode))

    @no_grad
    def render(self, ws, noise_mode: str = "const") -> torch.Tensor:
        """The unedited images of ws (the first frame of an edit strip)."""
        gen = self.generator
        return check_images(gen.synthesize(gen.styles(check_latent(ws, gen)), noise_mode=noise_mode))

    def edit_text(
        self,
        ws,
        prompt: str,
        *,
        method: str = "auto",
        neutral: str = "",
        alpha: float = 4.0,
        beta=DEFAULT_BETA,
        **options,
    ):
        """Edit toward `prompt` by the method that works here -> EditResult(images, method, reason) (edit_text.py)."""
        from query.edit_text import edit_text

        return edit_text(self, ws, prompt, method=method, neutral=neutral, alpha=alpha, beta=beta, **options)

    @no_grad
    def sample_ws(self, seeds, psi: float = DEFAULT_PSI) -> torch.Tensor:
        """w [len(seeds), w_dim], one z per seed (models/seeds.py: the image --seed gives), truncated toward mean_w."""
        gen = self.generator
        if not (isinstance(psi, (int, float)) and math.isfinite(psi) and abs(psi) <= 10):
            raise AtlasError(f"psi must be a finite number within ±10 (0.7 in the paper), got {psi!r}.")
        return seed_ws(gen, seeds, psi)


def channel_overlap(a, b, channels: np.ndarray) -> dict:
    """Channels two composition terms both move: count, Jaccard, how many push the same way, the strongest."""
    (pa, _, da), (pb, _, db) = a, b
    sa, sb = set(np.flatnonzero(da.delta_s).tolist()), set(np.flatnonzero(db.delta_s).tolist())
    shared = sorted(sa & sb, key=lambda r: -abs(da.scores[r]) - abs(db.scores[r]))
    same = sum(1 for r in shared if np.sign(da.delta_s[r]) == np.sign(db.delta_s[r]))
    return dict(
        a=pa,
        b=pb,
        shared=len(shared),
        jaccard=len(shared) / max(len(sa | sb), 1),
        same_sign=same,
        opposite_sign=len(shared) - same,
        channels=[(int(channels[r, 0]), int(channels[r, 1])) for r in shared[:10]],
    )
