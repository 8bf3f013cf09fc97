"""Text encoding: plain open_clip encode_text (the baseline) vs ClipEmbedder's bucketed causal path.

ViT-B-32 with random weights (the architecture, not the weights, sets the cost), the 79 ImageNet templates
for one phrase, as embed_phrases sends them. Prints p50/p99 seconds over --repeats runs, the speed-up and
the largest difference between the two results.

    .venv/bin/python benchmarks/text_encode.py [--model ViT-B-32] [--phrase "smiling face"] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from models.clip import load_clip  # noqa: E402
from models.text import load_templates  # noqa: E402


def timed(fn, repeats: int) -> tuple[list[float], torch.Tensor]:
    """Run fn() once to warm up, then `repeats` times; (seconds of each run, last result)."""
    out = fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - start)
    return seconds, out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--phrase", default="smiling face")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    embedder = load_clip(args.model, pretrained=None, seed=0)
    texts = [t.replace("{}", args.phrase) for t in load_templates()]
    tokens = embedder.tokenize(texts)  # [79, 77]

    def plain():
        with torch.inference_mode():
            return F.normalize(embedder.model.encode_text(tokens), dim=-1)

    def ours():
        return embedder.encode_text(texts)  # tokenisation included: the real cost of a call

    plain_s, plain_out = timed(plain, args.repeats)
    ours_s, ours_out = timed(ours, args.repeats)
    diff = (plain_out - ours_out).abs().max().item()
    lengths = (tokens.argmax(-1) + 1).tolist()

    print(
        f"{args.model}, random weights, {len(texts)} templates x '{args.phrase}' (token lengths "
        f"{min(lengths)}..{max(lengths)} of {embedder.context_length}), {torch.get_num_threads()} threads, "
        f"{args.repeats} runs"
    )
    print(f"{'method':<34}{'p50 s':>9}{'p99 s':>9}{'speed-up':>10}")
    p50 = statistics.median(plain_s)
    for name, secs in [("open_clip encode_text (baseline)", plain_s), ("ClipEmbedder.encode_text", ours_s)]:
        print(
            f"{name:<34}{statistics.median(secs):>9.3f}{percentile(secs, 0.99):>9.3f}"
            f"{p50 / statistics.median(secs):>9.1f}x"
        )
    print(f"max |difference| of the unit embeddings: {diff:.2e}")


if __name__ == "__main__":
    main()
