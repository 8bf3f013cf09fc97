"""Web page latency: a slider move (4 edited images, render + PNG, over HTTP) and a new prompt, on the demo atlas.

The server is the real one (`python -m serve`, uvicorn on 127.0.0.1, its own process); the client asks as the page
does: 4 requests at once (one per image) for every alpha. Baselines in the same run: the library path with no
server (atlas.edit on the 4 latents + PNG encode, what `query.py edit` does per alpha), and the page's
endpoint asked for all 4 images in one request.

    python benchmarks/serve.py [--atlas DIR] [--moves 200] [--prompts 30] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SEEDS = (0, 1, 2, 3)


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def find_atlas(given) -> Path:
    candidates = (
        [given]
        if given
        else [
            os.environ.get("STYLEATLAS_DEMO_ATLAS"),
            REPO / "atlas",
            *sorted((REPO / "out" / "test_cache").glob("shapes-*")),
        ]
    )
    for c in candidates:
        if c and (Path(c) / "atlas.h5").exists():
            return Path(c)
    sys.exit("no demo atlas: build one (python build_index.py --out atlas --num-images 8) or pass --atlas DIR")


def start_server(path: Path, threads: int | None):
    """`python -m serve` in its own process (as people run it), on a free port of 127.0.0.1."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cmd = [sys.executable, "-m", "serve", "--atlas", str(path), "--port", str(port)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            httpx.get(base + "/api/info", timeout=5).raise_for_status()
            return proc, base
        except httpx.HTTPError:
            if proc.poll() is not None:
                sys.exit(f"the server exited with status {proc.returncode}")
            time.sleep(0.2)
    proc.kill()
    sys.exit("the server did not answer within 120 s")


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def row(name: str, seconds: list[float]) -> str:
    ms = [1000 * s for s in seconds]
    return f"{name:<58} {percentile(ms, 0.5):8.1f} {percentile(ms, 0.99):8.1f} {np.mean(ms):8.1f} {len(ms):6d}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atlas", default=None)
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import httpx
    from PIL import Image

    from query.opening import open_atlas

    path = find_atlas(args.atlas)
    atlas = open_atlas(dict(atlas=path, generator=None, clip=None, pretrained=None, device="cpu"))
    server, base = start_server(path, args.threads)
    rng = np.random.default_rng(0)
    alphas = [round(float(a), 2) for a in rng.uniform(-10, 10, args.moves)]
    print(
        f"atlas {path} ({len(atlas.channels)} channels, {atlas.data.layers[-1]['resolution']} px); torch threads "
        f"{torch.get_num_threads()}; {os.cpu_count()} CPUs"
    )
    print(f"load before: {load()}")

    clients = [httpx.Client(base_url=base, timeout=60) for _ in SEEDS]
    with ThreadPoolExecutor(len(SEEDS)) as pool:

        def get(i, url, params):
            r = clients[i].get(url, params=params)
            assert r.status_code == 200, r.text
            return r.content

        def move(alpha, prompt="red"):
            params = dict(prompt=prompt, beta="0.15", alpha=alpha)
            return list(pool.map(lambda i: get(i, "/api/edit.png", dict(params, seed=SEEDS[i])), range(len(SEEDS))))

        def timed(fn, values):
            fn(values[0])  # warm-up: models loaded, styles cached, direction cached
            out = []
            for v in values:
                start = time.perf_counter()
                fn(v)
                out.append(time.perf_counter() - start)
            return out

        page = timed(move, alphas)
        one = timed(
            lambda a: get(0, "/api/edit.png", [("prompt", "red"), ("alpha", a)] + [("seed", s) for s in SEEDS]), alphas
        )

        d = atlas.direction("red")
        ws = atlas.sample_ws(SEEDS, 0.7)

        def library(alpha):
            from query.media import to_uint8

            for img in to_uint8(atlas.edit(ws, d, alpha)):
                Image.fromarray(img).save(io.BytesIO(), format="PNG")

        lib = timed(library, alphas)

        colours, shapes = ["red", "blue", "green", "yellow", "purple", "orange"], ["circle", "square", "cross"]
        prompts = [f"a {colours[i % 6]} {shapes[i % 3]} seen {i} times" for i in range(args.prompts + 1)]

        def new_prompt(prompt):
            r = clients[0].get("/api/channels", params=dict(prompt=prompt))
            assert r.status_code == 200, r.text
            move(4.0, prompt)

        fresh = timed(new_prompt, prompts)
    load_after = load()
    for c in clients:
        c.close()
    server.terminate()
    server.wait(30)

    print(f"{'milliseconds':<58} {'p50':>8} {'p99':>8} {'mean':>8} {'n':>6}")
    print(row("slider move: 4 images, 4 requests at once (the page)", page))
    print(row("slider move: 4 images in one request (edit.png row)", one))
    print(row("baseline, no server: atlas.edit(4 ws) + 4 PNG encodes", lib))
    print(row("new prompt: /api/channels (CLIP, 79 templates) + 4 images", fresh))
    print(f"target: slider move p50 <= 150 ms -> {'met' if percentile(page, 0.5) <= 0.150 else 'NOT met'}")
    print(f"load after: {load_after}")


if __name__ == "__main__":
    main()
