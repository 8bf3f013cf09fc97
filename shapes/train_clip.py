"""Train the tiny demo CLIP contrastively on shapes-world (image, caption) pairs; CPU, resumable.

    python -m shapes.train_clip                 # writes models/demo/clip_config.json + clip.safetensors
    python -m shapes.train_clip --steps 200 --out-dir /tmp/clip   # a quick trial

Every batch is freshly rendered from a seeded numpy Generator. The loss is CLIP's symmetric cross-entropy
with one difference: a caption that mentions only some attributes ("a red circle") is a positive for every
image in the batch it truly describes (multi-positive soft targets), because the ground truth is known.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer

from models.demo import DEMO_DIR
from models.files import atomic_path
from models.text import load_templates
from shapes import config_from_args, torch_threads, world
from shapes.captions import attribute_table, matches, random_captions
from shapes.evaluate import held_out, zero_shot

# open_clip model config of the demo CLIP: a 32 px ModifiedResNet (CLIP's RN50 layout, narrow) and a
# 3-layer text transformer. A 4 px-patch ViT of similar cost learned shapes far more slowly on 1 CPU core.
CLIP_CONFIG = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=32, layers=[2, 2, 2, 2], width=16, head_width=32),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=3),
    # mean = std = 0.5: CLIP's [0,1] -> normalised step maps the world's [-1,1] images back to [-1,1]
    preprocess_cfg=dict(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
)


@dataclass(frozen=True)
class ClipTrainConfig:
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 50
    seed: int = 0
    threads: int = 1
    eval_every: int = 250
    checkpoint_every: int = 100
    out_dir: str = str(DEMO_DIR)
    work_dir: str = "out/demo_train/clip"


def build_model(seed: int = 0) -> open_clip.CLIP:
    cfg = {k: v for k, v in CLIP_CONFIG.items() if k != "preprocess_cfg"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**json.loads(json.dumps(cfg)))
    pp = CLIP_CONFIG["preprocess_cfg"]
    open_clip.set_model_preprocess_cfg(
        model,
        dict(
            size=32,
            mean=tuple(pp["mean"]),
            std=tuple(pp["std"]),
            interpolation="bicubic",
            resize_mode="shortest",
            fill_color=0,
        ),
    )
    return model


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """What ClipEmbedder.encode_image does at 32 px: [-1,1] -> [0,1] -> (x - mean) / std."""
    mean = torch.tensor(CLIP_CONFIG["preprocess_cfg"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_CONFIG["preprocess_cfg"]["std"]).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


def augment(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Mild blur and noise on some images, so generator samples (softer, noisier) stay in distribution."""
    n = images.shape[0]
    blur = torch.from_numpy(rng.random(n) < 0.3)
    if blur.any():
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
        images[blur] = F.conv2d(F.pad(images[blur], (1, 1, 1, 1), mode="replicate"), k, groups=3)
    sigma = torch.from_numpy(rng.uniform(0, 0.04, (n, 1, 1, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.standard_normal(images.shape).astype(np.float32))
    return (images + sigma * noise).clamp(-1, 1)


def encode_text(model: open_clip.CLIP, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's encode_text on ids cut after the batch's last end-of-text token (causal: same result)."""
    length = int(ids.argmax(-1).max()) + 1
    ids = ids[:, :length]
    x = model.token_embedding(ids) + model.positional_embedding[:length]  # [B, L, width]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x[torch.arange(ids.shape[0]), ids.argmax(-1)])  # [B, width]
    return x @ model.text_projection  # [B, embed_dim]


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, match: torch.Tensor):
    """Symmetric cross-entropy against soft targets spread over all true (image, caption) pairs."""
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T  # [B, B]
    match = match.float()
    i2t = -(F.log_softmax(logits, 1) * match / match.sum(1, keepdim=True)).sum(1).mean()
    t2i = -(F.log_softmax(logits, 0) * match / match.sum(0, keepdim=True)).sum(0).mean()
    return (i2t + t2i) / 2


def training_templates() -> list[str]:
    """The ImageNet templates that wrap some captions, minus those naming a size, brightness or colour
    ("a photo of a small {}.", "a dark photo of the {}.", "a black and white photo of the {}."), which would
    contradict the caption."""
    banned = ("small", "big", "large", "tiny", "dark", "bright", "black")
    return [t for t in load_templates() if not any(w in t for w in banned)]


def lr_at(step: int, cfg: ClipTrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def export(model: open_clip.CLIP, out_dir: Path) -> None:
    """Write clip_config.json and clip.safetensors (fp16) where load_clip("demo") reads them."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    sd = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(out_dir / "clip.safetensors") as tmp:
        save_file(sd, str(tmp))
    with atomic_path(out_dir / "clip_config.json") as tmp:
        tmp.write_text(json.dumps(CLIP_CONFIG, indent=2) + "\n", encoding="utf-8")


def train(cfg: ClipTrainConfig) -> open_clip.CLIP:
    """Trains with cfg.threads torch threads and gives the caller's thread count back afterwards."""
    with torch_threads(cfg.threads):
        return _train(cfg)


def _train(cfg: ClipTrainConfig) -> open_clip.CLIP:
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [dict(params=decay, weight_decay=cfg.weight_decay), dict(params=rest, weight_decay=0)],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    ckpt_path, start = work / "checkpoint.pt", 0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        start = int(ckpt["step"])
        print(f"resumed from step {start}", flush=True)
    tokenizer = SimpleTokenizer(context_length=CLIP_CONFIG["text_cfg"]["context_length"])
    templates = training_templates()
    eval_images, eval_attrs = held_out(500)
    t0 = time.time()
    for step in range(start, cfg.steps):
        rng = np.random.default_rng([cfg.seed, step])  # batch `step` is the same whether resumed or not
        attrs = world.sample_attributes(cfg.batch_size, rng)
        images = augment(world.render(attrs), rng)
        texts, spec = random_captions(attrs, rng, templates)
        match = torch.from_numpy(matches(spec, attribute_table(attrs)))  # [B, B]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        model.train()
        img = model.encode_image(preprocess(images))
        txt = encode_text(model, tokenizer(texts))
        loss = multi_positive_loss(img, txt, model.logit_scale.exp().clamp(max=100), match)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = step + 1
        if done % 20 == 0:
            print(
                f"step {done}/{cfg.steps} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} "
                f"lr {lr_at(step, cfg):.2e} {time.time() - t0:.0f}s",
                flush=True,
            )
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            with atomic_path(ckpt_path) as tmp:
                torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=done), tmp)
        if done % cfg.eval_every == 0 or done == cfg.steps:
            print(
                f"step {done} zero-shot (500 held-out, 79 templates): {evaluate(model, eval_images, eval_attrs)}",
                flush=True,
            )
    export(model, Path(cfg.out_dir))
    print(f"trained {cfg.steps - start} steps in {time.time() - t0:.0f}s; wrote {cfg.out_dir}", flush=True)
    return model


def evaluate(model: open_clip.CLIP, images: torch.Tensor, attrs: dict) -> dict:
    from models.clip import ClipEmbedder

    model.eval()
    acc = zero_shot(ClipEmbedder(model, name="demo-training"), images, attrs)
    return {k: round(v, 3) for k, v in acc.items()}


def main(argv=None) -> None:
    train(config_from_args(ClipTrainConfig, __doc__.splitlines()[0], argv))


if __name__ == "__main__":
    main()
