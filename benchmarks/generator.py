"""Images per second of the StyleGAN2 generator (1024 config-f architecture, random weights).

Forward and forward+backward, batch 1 and 8, on the CPU and, when CUDA is present, on the GPU (fp32 and
fp16 autocast). The ratio column compares each row with batch-1 forward on the same device in this run.

    python benchmarks/generator.py [--resolution 1024] [--batches 1,8] [--backward-batches 1,2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from models.stylegan2 import StyleGAN2Generator


def measure(gen, batch, backward, device, repeats, fp16=False):
    """Median seconds per call of synthesize(styles(w)) (and its backward) for one batch."""
    ws = gen.sample_ws(batch, seed=0, psi=0.7).to(device)
    times = []
    for i in range(repeats + 1):  # the first call is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=fp16):
            if backward:
                w = ws.clone().requires_grad_(True)
                gen.synthesize(gen.styles(w)).square().mean().backward()
            else:
                with torch.no_grad():
                    gen.synthesize(gen.styles(ws))
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--backward-batches", default=None, help="batches for forward+backward (default: --batches)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    gen = StyleGAN2Generator(resolution=args.resolution)
    print(
        f"StyleGAN2 {args.resolution}px config-f, {sum(p.numel() for p in gen.parameters()) / 1e6:.1f} M params, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(f"{'device':<8}{'precision':<10}{'pass':<18}{'batch':>6}{'s/batch':>10}{'img/s':>9}{'vs b1 fwd':>11}")
    for device in devices:
        gen = gen.to(device)
        precisions = [False] + ([True] if device.type == "cuda" else [])
        for fp16 in precisions:
            base = None
            for backward in (False, True):
                sizes = args.backward_batches if backward and args.backward_batches else args.batches
                for batch in [int(b) for b in sizes.split(",")]:
                    sec = measure(gen, batch, backward, device, args.repeats, fp16)
                    ips = batch / sec
                    base = base or ips
                    print(
                        f"{device.type:<8}{'fp16' if fp16 else 'fp32':<10}"
                        f"{'forward+backward' if backward else 'forward':<18}{batch:>6}{sec:>10.3f}{ips:>9.2f}"
                        f"{ips / base:>10.2f}x",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
