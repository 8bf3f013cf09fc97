"""Query latency and export throughput: query.Atlas vs the reference query path, measured in the same run.

The reference is StyleCLIP's global-direction path written out per prompt in numpy (its GetBoundary /
SplitS): np.dot(fs3, dt), zero below beta, divide by the max, then one array per style layer (toRGB
zeros inserted) times that layer's std; a new prompt is embedded by open_clip's plain encode_text on all 79
templates. Synthetic AtlasData at FFHQ scale (C = 6,048, D = 512, 26 layers); ViT-B-32 with random weights
(the architecture, not the weights, sets the cost); the shapes-world atlas too when --atlas exists.

    .venv/bin/python benchmarks/query.py [--threads 1] [--repeats 200] [--export 10000] [--atlas atlas]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn, args_list) -> list[float]:
    fn(args_list[0])  # warm-up
    seconds = []
    for a in args_list:
        start = time.perf_counter()
        fn(a)
        seconds.append(time.perf_counter() - start)
    return seconds


class ReferencePath:
    """StyleCLIP's query path per prompt (numpy), on the same arrays."""

    def __init__(self, data, embedder=None):
        self.fs3 = data.relevance  # [C, D]
        self.vocab = {p: i for i, p in enumerate(data.vocab)}
        self.emb, self.neutral = data.vocab_embeddings, data.neutral_embedding
        self.layers = data.layers
        self.std = [np.asarray(s) for s in data.layer_std]
        self.embedder, self.templates = embedder, data.templates

    def text_features(self, prompt):
        if prompt in self.vocab:
            return self.emb[self.vocab[prompt]]
        import open_clip
        texts = [t.replace("{}", prompt) for t in self.templates]
        with torch.no_grad():
            f = self.embedder.model.encode_text(open_clip.tokenize(texts))  # [T, D], full 77-token context
        f = f / f.norm(dim=-1, keepdim=True)
        f = f.mean(0)
        return (f / f.norm()).numpy()

    def boundary(self, prompt, beta=0.15):
        dt = self.text_features(prompt) - self.neutral
        dt = dt / np.linalg.norm(dt)
        tmp = np.dot(self.fs3, dt)
        select = np.abs(tmp) < beta
        tmp[select] = 0
        tmp = tmp / np.abs(tmp).max()
        out, start = [], 0  # SplitS: per style layer, toRGB zeros, times the layer's std
        for layer, std in zip(self.layers, self.std):
            if layer["in_atlas"]:
                w = layer["width"]
                out.append(tmp[start:start + w] * std)
                start += w
            else:
                out.append(np.zeros(layer["width"]))
        return out


def row(name, ours, ref, unit="ms", scale=1e3):
    p50, p99 = percentile(ours, 0.5) * scale, percentile(ours, 0.99) * scale
    r50, r99 = percentile(ref, 0.5) * scale, percentile(ref, 0.99) * scale
    print(f"| {name:<44} | {p50:9.3f} | {p99:9.3f} | {r50:9.3f} | {r99:9.3f} | {r50 / p50:6.1f}x | {unit} |")


def bench_atlas(title, data, embedder, repeats, new_repeats, vocab_prompts, new_prompts):
    from query import Atlas

    atlas = Atlas.from_data(data, embedder=embedder)
    ref = ReferencePath(data, embedder)
    print(f"\n{title}: C = {len(data.channels):,}, D = {data.dim}, V = {len(data.vocab):,}")
    print("| case                                         | ours p50  | ours p99  | ref p50   | ref p99   | speed  | unit |")
    print("|----------------------------------------------|-----------|-----------|-----------|-----------|--------|------|")
    prompts = [vocab_prompts[i % len(vocab_prompts)] for i in range(repeats)]
    ours = timed(lambda p: atlas.direction(p, beta=0.1), prompts)
    theirs = timed(lambda p: ref.boundary(p, beta=0.1), prompts)
    d = atlas.direction(prompts[0], beta=0.1)
    expected = np.concatenate([a for a, l in zip(ref.boundary(prompts[0], 0.1), data.layers) if l["in_atlas"]])
    assert np.allclose(d.delta_s, expected, rtol=1e-4, atol=1e-6), "ours and the reference disagree"
    row("direction(), vocabulary prompt", ours, theirs)
    if embedder is not None:
        fresh = [f"{new_prompts[i % len(new_prompts)]} {i}" for i in range(new_repeats + 1)]
        ours = timed(lambda p: atlas.direction(p, beta=0.05), fresh)
        theirs = timed(lambda p: ref.boundary(p, beta=0.05), fresh)
        row(f"direction(), new prompt ({len(data.templates)} templates)", ours, theirs, "s", 1)
    return atlas, ref


def bench_export(atlas, ref, n, ref_n):
    from query.export import compute_library, export_library

    vocab = atlas.data.vocab
    prompts = [vocab[i % len(vocab)] for i in range(n)]
    start = time.perf_counter()
    lib = compute_library(atlas, prompts, beta=0.1)
    compute = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_library(atlas, prompts, Path(tmp) / "library.npz", beta=0.1)
        written = time.perf_counter() - start
    start = time.perf_counter()
    for p in prompts[:ref_n]:
        ref.boundary(p, beta=0.1)
    ref_rate = ref_n / (time.perf_counter() - start)
    print(f"\nexport of {n:,} vocabulary prompts (C = {lib.delta_s.shape[1]:,}):")
    print("| path                                  | directions/s |")
    print("|---------------------------------------|--------------|")
    print(f"| ours, one batched product (in memory) | {n / compute:12,.0f} |")
    print(f"| ours, written to .npz + manifest      | {n / written:12,.0f} |")
    print(f"| reference, per prompt ({ref_n:,} timed)   | {ref_rate:12,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--new-repeats", type=int, default=5)
    parser.add_argument("--export", type=int, default=10_000)
    parser.add_argument("--atlas", default="atlas")
    parser.add_argument("--no-clip", action="store_true", help="Skip the new-prompt rows (no ViT-B-32 build).")
    parser.add_argument("--atlas-only", action="store_true", help="Only the rows of --atlas.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, torch {torch.__version__}, numpy {np.__version__}")
    if not args.atlas_only:
        synthetic_rows(args)
    atlas_rows(args)


def synthetic_rows(args) -> None:
    from models.text import load_templates
    from query.synthetic import ffhq_layers, synthetic_atlas_data

    vocab = [f"phrase {i}" for i in range(10_000)]
    data = synthetic_atlas_data(layers=ffhq_layers(), dim=512, vocab=vocab, seed=0, label_k=1)
    data.templates = load_templates()
    embedder = None
    if not args.no_clip:
        from models.clip import load_clip
        embedder = load_clip("ViT-B-32", pretrained=None, seed=0)
    atlas, ref = bench_atlas("synthetic FFHQ-scale atlas", data, embedder, args.repeats, args.new_repeats,
                             vocab[:100], ["a smiling face with curly hair", "an old man", "blue eyes"])
    bench_export(atlas, ref, args.export, min(args.export, 1000))


def atlas_rows(args) -> None:
    if (Path(args.atlas) / "atlas.h5").exists():
        import index
        from models.clip import load_clip
        demo = index.read_atlas(args.atlas, require_complete=False)
        try:
            clip = load_clip("demo")
        except Exception as exc:  # the demo CLIP is not there: vocabulary rows only
            print(f"(demo CLIP unavailable: {exc})")
            clip = None
        bench_atlas(f"shapes-world atlas {args.atlas}", demo, clip, args.repeats, args.new_repeats,
                    [p for p in demo.vocab if p != demo.neutral][:50], ["a big red circle", "a tiny blue square"])
    else:
        print(f"\n(no atlas at {args.atlas}: shapes-world rows skipped)")


if __name__ == "__main__":
    main()
