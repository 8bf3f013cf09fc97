"""SPEC §2 style statistics: per-channel mean and std of every style layer (toRGB too), streamed in float64.

Each chunk of samples reduces to (count, mean, M2) per channel with a two-pass batch reduction merged by
Chan's parallel update; chunks are merged in chunk order, so the result is the same whichever process
computed which chunk and however often the build was restarted.
"""

from __future__ import annotations

import numpy as np
import torch

from index.io import read_npz, write_npz_atomic
from index.work import chunk_path, missing_chunks, stats_path
from pipeline.common import bar, chunk_ranges, chunk_seed, generator_device, truncated_w
from pipeline.config import StatsConfig

STAGE = "stats"
SEED_BLOCK = 1000  # samples per seed block of the z stream


def chan_merge(a: tuple, b: tuple) -> tuple:
    """Merge two (count, mean, M2) reductions (Chan et al. 1979); float64 arrays."""
    na, ma, m2a = a
    nb, mb, m2b = b
    if na == 0:
        return b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), m2a + m2b + delta * delta * (na * nb / n)


def sample_z(seed: int, start: int, stop: int, z_dim: int) -> torch.Tensor:
    """Samples start..stop of the seeded z stream [stop - start, z_dim], drawn on the CPU.

    The stream is cut into fixed blocks of SEED_BLOCK samples with their own seeds, so sample i is the same
    whatever the chunk size, the batch size, the process or the device.
    """
    first, last = start // SEED_BLOCK, (stop - 1) // SEED_BLOCK
    z = torch.cat(
        [
            torch.randn(SEED_BLOCK, z_dim, generator=torch.Generator().manual_seed(chunk_seed(seed, STAGE, b)))
            for b in range(first, last + 1)
        ]
    )
    return z[start - first * SEED_BLOCK : stop - first * SEED_BLOCK]


@torch.no_grad()
def compute_chunk(generator, cfg: StatsConfig, start: int, stop: int) -> tuple:
    """(count, mean [S], M2 [S]) over samples start..stop, S = all style channels of all layers."""
    device = generator_device(generator)
    z = sample_z(cfg.seed, start, stop, int(generator.z_dim))  # [n, z_dim]
    acc = (0, 0.0, 0.0)
    for zb in z.split(cfg.batch_size):
        w = truncated_w(generator, zb.to(device), cfg.psi)  # [b, w_dim]
        s = torch.cat([torch.as_tensor(x).reshape(len(zb), -1) for x in generator.styles(w)], 1)
        s = s.detach().double().cpu().numpy()  # [b, S]
        mean = s.mean(0)
        acc = chan_merge(acc, (len(s), mean, ((s - mean) ** 2).sum(0)))
    return acc


def run(generator, cfg: StatsConfig, out_dir, chunks: list[int], show: bool) -> int:
    """Compute the given stats chunks that are missing; return the number of samples mapped."""
    ranges = chunk_ranges(cfg.num_samples, cfg.chunk_size)
    todo = missing_chunks(out_dir, STAGE, len(ranges), among=chunks)
    done = 0
    with bar(sum(ranges[i][1] - ranges[i][0] for i in todo), "style statistics", "sample", show) as pbar:
        for i in todo:
            n, mean, m2 = compute_chunk(generator, cfg, *ranges[i])
            write_npz_atomic(chunk_path(out_dir, STAGE, i), count=np.int64(n), mean=mean, m2=m2)
            pbar.update(n)
            done += n
    return done


def merge(out_dir, cfg: StatsConfig) -> dict:
    """Merge every chunk (in order) into stats.npz: mean, std (population, ddof 0) per style channel."""
    path = stats_path(out_dir)
    if path.exists():
        return read_npz(path)
    acc = (0, 0.0, 0.0)
    for i in range(len(chunk_ranges(cfg.num_samples, cfg.chunk_size))):
        z = read_npz(chunk_path(out_dir, STAGE, i))
        acc = chan_merge(acc, (int(z["count"]), z["mean"], z["m2"]))
    n, mean, m2 = acc
    out = dict(count=np.int64(n), mean=np.asarray(mean, np.float64), std=np.sqrt(np.asarray(m2, np.float64) / n))
    write_npz_atomic(path, **out)
    return read_npz(path)  # the file every worker reads (the first writer's, if several merged at once)
