"""Query latency and export throughput: query.Atlas vs the reference query path, measured in the same run.

The reference is StyleCLIP's global-direction path written out per prompt in numpy (its GetBoundary /
SplitS): np.dot(fs3, dt), zero below beta, divide by the max, then one array per style layer (toRGB
zeros inserted) times that layer's std; a new prompt is embedded by open_clip's plain encode_text on all 79
templates. Synthetic AtlasData at FFHQ scale (C = 6,048, D = 512, 26 layers); ViT-B-32 with random weights
(the architecture, not the weights, sets the cost); the shapes-world atlas too when --atlas exists.

    .venv/bin/python benchmarks/query.py [--threads 1] [--repeats 200] [--export 10000] [--atlas atlas]
                                         [--cold 5]

--threads sets the BLAS threads as well (before numpy loads), so that both paths multiply on as many cores: a
threaded gemv is faster on idle cores and 10-50x slower on busy ones, and query.direction stays on one thread by
design (single_scores). --blas-default leaves numpy's BLAS threading alone (the reference then uses every core).

Cold start (--cold N): `query.py direction PROMPT --json` for a vocabulary prompt as a fresh process, against a
bare `python -c "import torch"`, alternated N times in the same run (medians of wall time); both atlases, the
shapes world (--atlas) and a synthetic FFHQ-scale one written to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _blas_threads_from_argv() -> None:
    """--threads N also pins BLAS (OpenBLAS / MKL / OpenMP read these once, when numpy loads)."""
    if "--blas-default" in sys.argv:
        return
    threads = "1"
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            threads = sys.argv[i + 1]
        elif arg.startswith("--threads="):
            threads = arg.split("=", 1)[1]
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = threads


_blas_threads_from_argv()

import numpy as np  # noqa: E402
import torch  # noqa: E402


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_pair(fn_a, fn_b, args_list) -> tuple[list[float], list[float]]:
    """Per-call seconds of two functions called alternately on the same arguments (after one warm-up each), so
    that a machine whose speed drifts (other jobs, frequency, cache) weighs on both alike."""
    fn_a(args_list[0]), fn_b(args_list[0])
    a, b = [], []
    for x in args_list:
        for fn, out in ((fn_a, a), (fn_b, b)):
            start = time.perf_counter()
            fn(x)
            out.append(time.perf_counter() - start)
    return a, b


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
                out.append(tmp[start : start + w] * std)
                start += w
            else:
                out.append(np.zeros(layer["width"]))
        return out


def row(name, ours, ref, unit="ms", scale=1e3):
    p50, p99 = percentile(ours, 0.5) * scale, percentile(ours, 0.99) * scale
    r50, r99 = percentile(ref, 0.5) * scale, percentile(ref, 0.99) * scale
    print(f"| {name:<44} | {p50:9.3f} | {p99:9.3f} | {r50:9.3f} | {r99:9.3f} | {r50 / p50:6.2f}x | {unit} |")


def bench_atlas(title, data, embedder, repeats, new_repeats, vocab_prompts, new_prompts):
    from query import Atlas

    atlas = Atlas(data, embedder=embedder, check_fingerprints=False)
    ref = ReferencePath(data, embedder)
    print(f"\n{title}: C = {len(data.channels):,}, D = {data.dim}, V = {len(data.vocab):,}")
    print(
        "| case                                         | ours p50  | ours p99  | ref p50   | ref p99   "
        "| speed  | unit |"
    )
    print(
        "|----------------------------------------------|-----------|-----------|-----------|-----------|--------|------|"
    )
    prompts = [vocab_prompts[i % len(vocab_prompts)] for i in range(repeats)]
    ours, theirs = timed_pair(lambda p: atlas.direction(p, beta=0.1), lambda p: ref.boundary(p, beta=0.1), prompts)
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
    parser.add_argument("--blas-default", action="store_true", help="Leave numpy's BLAS threads alone.")
    parser.add_argument("--cold", type=int, default=5, help="Cold-start pairs (0: skip).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    blas = "numpy default" if args.blas_default else os.environ.get("OPENBLAS_NUM_THREADS")
    print(
        f"threads {args.threads} (BLAS {blas}), torch {torch.__version__}, numpy {np.__version__}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    if not args.atlas_only:
        synthetic_rows(args)
    atlas_rows(args)
    if args.cold:
        cold_start_rows(args)
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


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
    atlas, ref = bench_atlas(
        "synthetic FFHQ-scale atlas",
        data,
        embedder,
        args.repeats,
        args.new_repeats,
        vocab[:100],
        ["a smiling face with curly hair", "an old man", "blue eyes"],
    )
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
        bench_atlas(
            f"shapes-world atlas {args.atlas}",
            demo,
            clip,
            args.repeats,
            args.new_repeats,
            [p for p in demo.vocab if p != demo.neutral][:50],
            ["a big red circle", "a tiny blue square"],
        )
    else:
        print(f"\n(no atlas at {args.atlas}: shapes-world rows skipped)")


def _wall(cmd) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
    return time.perf_counter() - start


def _modules_loaded(argv) -> str:
    """Which heavy modules a query CLI run imported (it should be none of them for atlas-only answers)."""
    probe = (
        "import sys; from query.cli import main; main(sys.argv[1:]); "
        "print(','.join(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules) or 'none', "
        "file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True, text=True)
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"


def write_synthetic_atlas(folder: Path) -> str:
    """A complete FFHQ-scale atlas (C = 6,048, D = 512, V = 10,000) in `folder`; returns a vocabulary prompt."""
    import index
    from pipeline.assemble import write_ip_index, write_manifest
    from pipeline.config import IndexConfig
    from query.synthetic import ffhq_layers, synthetic_atlas_data

    data = synthetic_atlas_data(
        layers=ffhq_layers(), dim=512, vocab=[f"phrase {i}" for i in range(10_000)], seed=0, label_k=10, path=folder
    )
    folder.mkdir(parents=True, exist_ok=True)
    index.write_atlas(data)
    data.extra["indexes"] = {
        name: write_ip_index(vectors, IndexConfig(), folder / file)
        for name, vectors, file in (
            ("vocabulary", data.vocab_embeddings, index.VOCAB_INDEX),
            ("relevance", data.relevance, index.RELEVANCE_INDEX),
        )
    }
    index.write_catalog(data)
    write_manifest(folder, data)
    return "phrase 7"


def cold_start_rows(args) -> None:
    """`query.py direction PROMPT --json` as a new process vs `python -c "import torch"`, alternated."""
    import index

    atlases = []
    if (Path(args.atlas) / "atlas.h5").exists():
        demo = index.read_atlas(args.atlas)
        atlases.append(
            (
                f"shapes world ({args.atlas})",
                Path(args.atlas).resolve(),
                next(p for p in demo.vocab if p != demo.neutral),
            )
        )
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name) / "ffhq_synthetic"
    atlases.append(("synthetic FFHQ scale (C 6,048, V 10,000)", folder, write_synthetic_atlas(folder)))
    torch_cmd = [sys.executable, "-c", "import torch"]
    print(f"\ncold start, {args.cold} alternated pairs after one warm-up each (wall seconds, medians):")
    print("| atlas                                      | query.py direction | import torch | ratio | imported |")
    print("|--------------------------------------------|--------------------|--------------|-------|----------|")
    for title, folder, prompt in atlases:
        argv = ["direction", prompt, "--json", "--atlas", str(folder)]
        query_cmd = [sys.executable, "query.py", *argv]
        _wall(query_cmd), _wall(torch_cmd)
        ours, theirs = [], []
        for _ in range(args.cold):
            ours.append(_wall(query_cmd))
            theirs.append(_wall(torch_cmd))
        ratios = sorted(a / b for a, b in zip(ours, theirs))
        print(
            f"| {title:<42} | {percentile(ours, 0.5):16.3f} s | {percentile(theirs, 0.5):10.3f} s | "
            f"{ratios[len(ratios) // 2]:5.2f} | {_modules_loaded(argv):<8} |"
        )
    tmp.cleanup()


if __name__ == "__main__":
    main()
