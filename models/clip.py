"""CLIP as StyleAtlas sees it: an embedder of [-1,1] image tensors and raw texts into one unit sphere.

`load_clip` builds an open_clip model from a model name, a JSON config or "demo", with weights from an
open_clip tag (cache only when offline) or a local file; `ClipEmbedder` does CLIP's preprocessing on
tensors (differentiable) and a fast text path that stops the causal text transformer at the last
end-of-text token of each length bucket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import CustomResidualAttentionBlock, ResidualAttentionBlock, TextTransformer

from models.clip_weights import apply_clip_state_dict, read_clip_state_dict, warn_quickgelu
from models.errors import AtlasError, CheckpointError, PromptError
from models.files import hash_tensors
from models.prompts import validate_prompt

DEMO_DIR = Path(__file__).resolve().parent / "demo"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_BUCKET_OVERHEAD_TOKENS = 8  # cost of one extra forward call, in padded tokens (measured on 2 CPU cores)


class PromptTruncatedWarning(UserWarning):
    """A prompt is longer than CLIP's context and was cut (SPEC §4: never silently)."""


class ClipEmbedder:
    """An open_clip model + tokenizer with unit-norm `encode_image` / `encode_text` (CONTRACT: embedders)."""

    def __init__(self, model, tokenizer=None, *, name: str = "custom", pretrained=None, mean=None, std=None):
        cfg = open_clip.get_model_preprocess_cfg(model)
        size = cfg.get("size", getattr(getattr(model, "visual", None), "image_size", None))
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if size[0] != size[1]:
            raise CheckpointError(f"CLIP model {name} has a non-square input {size}; only square inputs are supported.")
        self.model = model
        self.name, self.pretrained = name, None if pretrained is None else str(pretrained)
        self.image_size = int(size[0])
        self.mean = tuple(float(v) for v in (mean or cfg.get("mean") or OPENAI_MEAN))
        self.std = tuple(float(v) for v in (std or cfg.get("std") or OPENAI_STD))
        self.context_length = int(getattr(model, "context_length", 77))
        self.tokenizer = tokenizer or SimpleTokenizer(context_length=self.context_length)
        self.dim = int(self._output_dim())
        self._text_tower = causal_text_tower(model)

    def _output_dim(self) -> int:
        with torch.inference_mode():
            return self.model.encode_text(
                torch.zeros(1, self.context_length, dtype=torch.long, device=self.device)
            ).shape[-1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> "ClipEmbedder":
        self.model.to(device)
        return self

    def describe(self) -> dict:
        return dict(
            name=self.name,
            pretrained=self.pretrained,
            image_size=self.image_size,
            mean=list(self.mean),
            std=list(self.std),
            context_length=self.context_length,
            dim=self.dim,
        )

    def fingerprint(self) -> str:
        """sha256 of every state-dict tensor (sorted keys) plus preprocessing and context length."""
        h = hashlib.sha256()
        hash_tensors(h, self.model.state_dict())
        h.update(json.dumps([self.image_size, self.mean, self.std, self.context_length]).encode())
        return h.hexdigest()

    def architecture(self) -> str:
        """sha256 of what computes besides the weights: the model config and every module's class, in order
        (ViT-B-32 and ViT-B-32-quickgelu share their weights and differ here)."""
        modules = [type(m).__name__ for _, m in self.model.named_modules()]
        config = getattr(self, "model_config", None)
        text = json.dumps(dict(config=config, modules=modules), sort_keys=True, default=str)
        return "arch:" + hashlib.sha256(text.encode()).hexdigest()

    def _needs_grad(self, x=None) -> bool:
        if not torch.is_grad_enabled():
            return False
        return (x is not None and x.requires_grad) or any(p.requires_grad for p in self.model.parameters())

    # ---- images -----------------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor, preprocess: str = "clip") -> torch.Tensor:
        """[B,3,H,W] in [-1,1] -> [B,3,S,S] normalised CLIP input (SPEC §3 "clip", SPEC §6 "pool")."""
        x = (images.to(self.device, torch.float32) + 1) / 2  # [B,3,H,W] in [0,1]
        size, (h, w) = self.image_size, x.shape[-2:]
        if preprocess == "clip":
            # torchvision's Resize(int) + CenterCrop on PIL, with PIL's antialiased bicubic kernel
            nh, nw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
            if (nh, nw) != (h, w):
                x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
            x = x[..., top : top + size, left : left + size]  # [B,3,S,S]
        elif preprocess == "pool":
            if min(h, w) < size:  # StyleCLIP upsamples (nearest) before pooling when the image is small
                factor = -(-size // min(h, w))
                x = F.interpolate(x, scale_factor=factor, mode="nearest")
            x = F.adaptive_avg_pool2d(x, size)  # [B,3,S,S]
        else:
            raise AtlasError(f"unknown preprocess {preprocess!r}; use 'clip' (resize + crop) or 'pool'.")
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_image(self, images: torch.Tensor, preprocess: str = "clip", batch_size: int = 64) -> torch.Tensor:
        """[B,3,H,W] in [-1,1] -> [B, dim] unit embeddings; differentiable with respect to the images."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise AtlasError(f"encode_image takes a [B, 3, H, W] tensor in [-1, 1], got {shape}.")
        if images.shape[0] == 0:
            return torch.zeros(0, self.dim, device=self.device)
        if self._needs_grad(images):
            return torch.cat([self._encode_image_batch(x, preprocess) for x in images.split(batch_size)])
        with torch.inference_mode():
            out = torch.cat([self._encode_image_batch(x, preprocess) for x in images.split(batch_size)])
        return out.clone()  # a normal tensor, usable in later autograd code

    def _encode_image_batch(self, images, preprocess):
        return F.normalize(self.model.encode_image(self.preprocess(images, preprocess)).float(), dim=-1)

    # ---- texts ------------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """[N, context_length] token ids; warns (PromptTruncatedWarning) when a prompt is cut."""
        tok, ctx = self.tokenizer, self.context_length
        if isinstance(tok, SimpleTokenizer) and getattr(tok, "reduction_fn", None) is None:
            ids = torch.zeros(len(texts), ctx, dtype=torch.long)  # [N, ctx]
            cut = []
            for i, text in enumerate(texts):
                seq = [tok.sot_token_id] + tok.encode(text) + [tok.eot_token_id]
                if len(seq) > ctx:
                    cut.append((text, len(seq)))
                    seq = seq[: ctx - 1] + [tok.eot_token_id]
                ids[i, : len(seq)] = torch.tensor(seq)
        else:  # other tokenizers: a row without padding at its end filled the context
            ids = tok(texts)
            if ids.shape[1] != ctx:
                ids = tok(texts, context_length=ctx)
            cut = [(texts[i], ctx) for i in torch.nonzero(ids[:, -1] != 0).flatten().tolist()]
        if cut:
            more = f" (and {len(cut) - 1} more)" if len(cut) > 1 else ""
            warnings.warn(
                PromptTruncatedWarning(
                    f"prompt '{cut[0][0][:40]}...' has {cut[0][1]} tokens, more than CLIP's context of {ctx}; it "
                    f"was truncated{more}. Shorten it to keep its end."
                ),
                stacklevel=3,
            )
        return ids

    def encode_text(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """list of N raw prompts -> [N, dim] unit embeddings, in the order given."""
        if isinstance(texts, str):
            raise PromptError("encode_text takes a list of prompts, not one string; wrap it as [prompt].")
        texts = list(texts)
        for t in texts:
            validate_prompt(t)
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        ids = self.tokenize(texts).to(self.device)  # [N, ctx]
        if self._needs_grad():
            return self._encode_tokens(ids, batch_size)
        with torch.inference_mode():
            out = self._encode_tokens(ids, batch_size)
        return out.clone()

    def _encode_tokens(self, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
        if self._text_tower is None:  # not a causal open_clip text transformer: the model's own path
            return torch.cat([F.normalize(self.model.encode_text(x).float(), dim=-1) for x in ids.split(batch_size)])
        return encode_text_truncated(self._text_tower, ids, batch_size)


# ---- fast text path -------------------------------------------------------------------------------------
def causal_text_tower(model) -> dict | None:
    """The text tower's parts when it is a causal open_clip TextTransformer pooled at end-of-text, else None.

    Only then is every output position independent of later tokens, so the padding after the last
    end-of-text token can be skipped without changing the embedding.
    """
    if isinstance(model, open_clip.CLIP):
        tower, pool, eos = model, model.text_pool_type, getattr(model, "text_eos_id", None)
    elif isinstance(getattr(model, "text", None), TextTransformer):
        tower, pool, eos = model.text, model.text.pool_type, model.text.eos_id
        if tower.cls_emb is not None or tower.use_pad_mask:
            return None
    else:
        return None
    mask = getattr(tower, "attn_mask", None)
    if mask is None or pool not in ("argmax", "eos"):
        return None
    causal = torch.full(mask.shape, float("-inf"), device=mask.device).triu_(1)
    if mask.shape[0] < tower.context_length or not torch.equal(mask, causal):
        return None
    if not all(type(b) in (ResidualAttentionBlock, CustomResidualAttentionBlock) for b in tower.transformer.resblocks):
        return None
    return dict(tower=tower, pool=pool, eos=eos)


def end_positions(ids: torch.Tensor, pool: str, eos) -> torch.Tensor:
    """[N] index of the pooled (end-of-text) token of every row, as open_clip's text_global_pool picks it."""
    if pool == "argmax":
        return ids.argmax(dim=-1)
    return (ids == eos).int().argmax(dim=-1)


def length_buckets(lengths: list[int], overhead: int = _BUCKET_OVERHEAD_TOKENS) -> list[int]:
    """Upper bounds of contiguous length buckets minimising padded tokens + overhead per bucket (exact DP)."""
    distinct = sorted(set(lengths))
    count = {n: 0 for n in distinct}
    for n in lengths:
        count[n] += 1
    best, cut = [0.0] * (len(distinct) + 1), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):
        best[j], rows = float("inf"), 0
        for i in range(j, 0, -1):  # bucket = distinct[i-1 .. j-1], padded to distinct[j-1]
            rows += count[distinct[i - 1]]
            cost = best[i - 1] + rows * distinct[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    bounds, j = [], len(distinct)
    while j > 0:
        bounds.append(distinct[j - 1])
        j = cut[j]
    return bounds[::-1]


def encode_text_truncated(parts: dict, ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """[N, ctx] ids -> [N, dim] unit embeddings, running each length bucket only up to its last end token."""
    tower = parts["tower"]
    pos = end_positions(ids, parts["pool"], parts["eos"])  # [N]
    lengths = (pos + 1).tolist()
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    done, embs = [], []
    start = 0
    for bound in length_buckets(lengths):
        stop = start
        while stop < len(order) and lengths[order[stop]] <= bound:
            stop += 1
        for b in range(start, stop, batch_size):
            rows = torch.tensor(order[b : min(b + batch_size, stop)], device=ids.device)
            embs.append(_run_text_tower(tower, ids[rows, :bound], pos[rows]))  # [n, dim]
            done.append(rows)
        start = stop
    sorted_emb = torch.cat(embs)  # [N, dim] in bucket order
    out = torch.empty_like(sorted_emb)
    out[torch.cat(done)] = sorted_emb
    return out


def _run_text_tower(tower, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """What open_clip's encode_text computes, on ids cut to length L (every row's end token inside)."""
    length = ids.shape[1]
    cast = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(ids).to(cast) + tower.positional_embedding[:length].to(cast)  # [n, L, width]
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    x = tower.ln_final(x[torch.arange(x.shape[0], device=x.device), pos])  # [n, width]; LayerNorm is per token
    proj = tower.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return F.normalize(x.float(), dim=-1)


# ---- loading --------------------------------------------------------------------------------------------
def load_clip(
    name, pretrained=None, device="cpu", *, seed: int = 0, random_weights: bool = True, allow_download: bool = True
) -> ClipEmbedder:
    """A ClipEmbedder for an open_clip model name, a JSON/dict model config, or "demo" (the shipped tiny CLIP).

    `pretrained` is an open_clip tag (e.g. "openai"; downloaded where a network exists, else only from the
    local cache) or a local weights file; None means random weights drawn from `seed`, which a named model or
    a config file accepts only with random_weights=True (the CLIs: --random-weights).
    The embedder remembers where it came from in `.source` ({clip, pretrained}, files as absolute paths).
    allow_download=False: a tag is read from the local caches only (for names an atlas, not the user, gave).
    """
    if isinstance(name, str) and name == "demo":
        config, weights = DEMO_DIR / "clip_config.json", DEMO_DIR / "clip.safetensors"
        if not config.exists() or (pretrained is None and not weights.exists()):
            raise CheckpointError(
                f"the demo CLIP ({config.name}, {weights.name} in {DEMO_DIR}) is missing; "
                "reinstall StyleAtlas or train it with the demo training script."
            )
        embedder = _load_from_config(config, pretrained if pretrained is not None else weights, seed)
        embedder.name, embedder.pretrained = "demo", "demo" if pretrained is None else str(pretrained)
        embedder.source = dict(clip="demo", pretrained=None if pretrained is None else _source(pretrained))
        embedder.model.requires_grad_(False).eval()
        return embedder.to(device)
    if pretrained is None and not random_weights and not isinstance(name, dict):
        raise CheckpointError(
            f"CLIP {name} has no weights: pass --pretrained TAG (e.g. openai) or a local weights "
            "file, or --random-weights if random weights are really what you want."
        )
    if isinstance(name, dict) or (isinstance(name, (str, os.PathLike)) and str(name).endswith(".json")):
        embedder = _load_from_config(name, pretrained, seed)
        clip = None if isinstance(name, dict) else _source(name)
    elif isinstance(name, str):
        embedder = _load_named(name, pretrained, seed, allow_download)
        clip = name
    else:
        raise CheckpointError(
            f"load_clip takes an open_clip model name, a config dict or a .json path, got {type(name).__name__}."
        )
    embedder.source = dict(clip=clip, pretrained=None if pretrained is None else _source(pretrained))
    embedder.model.requires_grad_(False).eval()
    return embedder.to(device)


def _source(value) -> str:
    """A model file as an absolute path (so the atlas can find it from any folder); a name or tag as given."""
    path = Path(str(value)).expanduser()
    return str(path.resolve()) if path.exists() else str(value)


def _seeded(seed: int, build):
    """build() under a private RNG state seeded with `seed` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def read_model_config(source) -> tuple[dict, str]:
    """(open_clip model config dict, a label for messages) from a dict or a JSON file path."""
    if isinstance(source, dict):
        cfg, label = json.loads(json.dumps(source)), "custom"  # a deep copy: the caller's dict stays as it was
    else:
        path, label = Path(source).expanduser(), Path(source).stem
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"CLIP model config {path} does not exist; check the path.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"CLIP model config {path} is not readable JSON ({str(exc)[:100]}).") from None
        if not isinstance(cfg, dict):
            raise CheckpointError(f"CLIP model config {path} holds a {type(cfg).__name__}, not an object.")
    if isinstance(cfg.get("model_cfg"), dict):  # open_clip_config.json: {"model_cfg": ..., "preprocess_cfg": ...}
        cfg = {"preprocess_cfg": cfg.get("preprocess_cfg"), **cfg["model_cfg"]}
    return cfg, label


def _load_from_config(source, pretrained, seed: int) -> ClipEmbedder:
    cfg, label = read_model_config(source)
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise CheckpointError(
            f"CLIP model config {label} lacks {', '.join(missing)}; see open_clip's "
            "model_configs/*.json for the layout."
        )
    pp = cfg.pop("preprocess_cfg", None) or {}
    model_cls = open_clip.CustomTextCLIP if cfg.pop("custom_text", False) else open_clip.CLIP
    try:
        model = _seeded(seed, lambda: model_cls(**cfg))
    except Exception as exc:  # dataclass TypeErrors, asserts, hub look-ups of timm / HF towers offline
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"CLIP model config {label} is invalid or needs files that are not here ({first})."
        ) from None
    size = model.visual.image_size
    open_clip.set_model_preprocess_cfg(
        model,
        dict(
            size=size,
            mean=tuple(pp.get("mean", OPENAI_MEAN)),
            std=tuple(pp.get("std", OPENAI_STD)),
            interpolation="bicubic",
            resize_mode="shortest",
            fill_color=0,
        ),
    )
    torchscript = False
    if pretrained is not None:
        sd, torchscript = read_clip_state_dict(pretrained)
        apply_clip_state_dict(model, sd, pretrained, torchscript)
    warn_quickgelu(label, torchscript, bool(cfg.get("quick_gelu")))
    embedder = ClipEmbedder(
        model, SimpleTokenizer(context_length=model.context_length), name=label, pretrained=pretrained
    )
    embedder.model_config = cfg
    return embedder


def _load_named(name: str, pretrained, seed: int, allow_download: bool = True) -> ClipEmbedder:
    try:
        known = open_clip.get_model_config(name) is not None
    except Exception:  # "hf-hub:" names fetch their config from the hub
        known = False
    if not known:
        raise CheckpointError(
            f"'{name}' is not an open_clip model name (e.g. ViT-B-32, ViT-B-32-quickgelu); "
            "see open_clip.list_models(), or pass a model config .json."
        )
    weights, mean_std = None, {}
    if pretrained is not None:
        weights, mean_std = _resolve_pretrained(name, str(pretrained), allow_download)
    try:
        with _quiet_open_clip():  # its "initialized randomly" warning is false: our weights are loaded below
            model = _seeded(seed, lambda: open_clip.create_model(name, pretrained=None, **_no_tower_weights()))
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # open_clip raises RuntimeError/ValueError/OSError for hub-only parts offline
        raise CheckpointError(
            f"could not build open_clip model {name} ({str(exc).splitlines()[0][:120]}); "
            "pass a model config .json for a custom architecture."
        ) from None
    if mean_std:
        open_clip.set_model_preprocess_cfg(model, {**open_clip.get_model_preprocess_cfg(model), **mean_std})
    if weights is not None:
        sd, torchscript = read_clip_state_dict(weights)
        apply_clip_state_dict(model, sd, weights, torchscript)
        warn_quickgelu(name, torchscript, bool(open_clip.get_model_config(name).get("quick_gelu")))
    embedder = ClipEmbedder(model, tokenizer, name=name, pretrained=pretrained)
    embedder.model_config = open_clip.get_model_config(name)
    return embedder


@contextlib.contextmanager
def _quiet_open_clip():
    """Silence open_clip's root-logger warnings while it builds an architecture we fill with weights ourselves."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(old)


def _hub_cache_file(tag: dict) -> Path | None:
    """The Hugging Face cache copy of an open_clip tag's weights, without any network access; None if absent."""
    hub = tag.get("hf_hub", "")
    if not hub:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.pretrained import HF_WEIGHTS_NAME
    except ImportError:
        return None
    model_id, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    for candidate in (filename.replace(".bin", ".safetensors"), filename):
        found = try_to_load_from_cache(model_id, candidate)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def network_reachable(host: str = "huggingface.co", port: int = 443, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the model hub opens within timeout_s (no data is sent).

    The name look-up runs in a daemon thread: a resolver that hangs must not hang the command.
    """
    import socket
    import threading

    result = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def _no_tower_weights() -> dict:
    # a named timm / Hugging Face tower would otherwise fetch its own base weights from the hub
    return dict(pretrained_image=False, pretrained_text=False)


def _resolve_pretrained(name: str, pretrained: str, allow_download: bool = True) -> tuple[Path, dict]:
    """(local weights file, preprocessing of the tag) for an open_clip tag or a file path."""
    tag = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag:
        path = Path(pretrained).expanduser()
        if path.exists() or os.sep in pretrained or path.suffix:
            return path, {}
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise CheckpointError(
            f"'{pretrained}' is neither a pretrained tag of {name} (tags: {tags}) nor an "
            "existing file; pass a tag or a local checkpoint path."
        )
    mean_std = {k: tuple(tag[k]) for k in ("mean", "std") if tag.get(k)}
    url = tag.get("url", "")
    clip_cache = Path("~/.cache/clip").expanduser() / os.path.basename(url) if url else None
    if clip_cache is not None and clip_cache.is_file():  # OpenAI's own download location
        return clip_cache, mean_std
    if not allow_download:
        cached = _hub_cache_file(tag)
        if cached is None:
            raise CheckpointError(
                f"the {name} '{pretrained}' weights the atlas names are not in the local cache, and "
                f"StyleAtlas does not download what only an atlas names; pass --pretrained "
                f"{pretrained} yourself to allow the download, or a local weights file."
            )
        return cached, mean_std
    offline = any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    if not offline and not network_reachable():  # no network: fail now, not after a minute of hub retries
        raise CheckpointError(
            f"the {name} '{pretrained}' weights are not in the local cache and the model hub "
            "cannot be reached (offline); download them where a network exists, or pass a "
            "local checkpoint path as --pretrained."
        )
    if offline and not tag.get("hf_hub"):
        raise CheckpointError(
            f"the {name} '{pretrained}' weights are not available offline (not in ~/.cache/clip); "
            "pass a local checkpoint path as pretrained."
        )
    try:
        return Path(open_clip.download_pretrained(tag)), mean_std
    except Exception as exc:  # huggingface_hub / urllib errors of many kinds
        if offline:
            raise CheckpointError(
                f"the {name} '{pretrained}' weights are not available offline (not in the "
                "Hugging Face cache); pass a local checkpoint path as pretrained."
            ) from None
        raise CheckpointError(
            f"could not download the {name} '{pretrained}' weights "
            f"({_short(exc)}); pass a local checkpoint path as pretrained."
        ) from None


def _short(exc, limit: int = 160) -> str:
    """The first line of an exception, cut at a word boundary (with an ellipsis) when longer than `limit`."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0] + " …"
