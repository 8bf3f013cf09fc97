"""FAISS inner-product indexes over unit vectors (vocabulary embeddings, relevance rows), with measured recall.

Up to `exact_limit` vectors the index is exact (IndexFlatIP); above it, HNSW (graph search, inner product),
built with one thread so that the same vectors always give the same graph. Recall@10 of the approximate
index against exact search is measured at build time on a seeded sample of the vectors themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index.layout import RELEVANCE_INDEX, VOCAB_INDEX
from models.files import atomic_path


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def build_ip_index(
    vectors: np.ndarray,
    *,
    exact_limit: int = 100_000,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    device=None,
):
    """An inner-product index over `vectors` [N, D] float32: exact below exact_limit, HNSW above.

    device "cuda": the exact index is built on the GPUs FAISS sees (index/gpu.py); write_index stores a CPU copy.
    """
    import faiss

    from index.gpu import to_device

    x = np.ascontiguousarray(vectors, dtype=np.float32)  # [N, D]
    dim = x.shape[1]
    if len(x) <= exact_limit:
        index = to_device(faiss.IndexFlatIP(dim), device)
        index.add(x)
        return index
    index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # insertion order decides the graph: one thread keeps builds reproducible
    try:
        index.add(x)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def recall_at_k(index, vectors: np.ndarray, k: int = 10, num_queries: int = 256, seed: int = 0) -> float:
    """Fraction of the exact top-k (by inner product) that `index` returns, over seeded sample queries."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n == 0:
        return 1.0
    k = min(k, n)
    rng = np.random.default_rng(seed)
    q = x[rng.choice(n, size=min(num_queries, n), replace=False)]
    q = q + 0.05 * rng.standard_normal(q.shape).astype(np.float32)  # near, not on, stored vectors
    exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]  # [Q, k]
    _, found = index.search(q, k)
    hits = sum(len(set(e.tolist()) & set(f.tolist())) for e, f in zip(exact, found))
    return hits / float(exact.size)


def write_index(index, path) -> None:
    import faiss

    from index.gpu import to_cpu

    with atomic_path(path, suffix=".faiss") as tmp:
        faiss.write_index(to_cpu(index), str(tmp))


def _load(path: Path, device=None):
    if not path.exists() or not have_faiss():
        return None
    import faiss

    from index.gpu import to_device

    return to_device(faiss.read_index(str(path)), device)


def load_vocab_index(out_dir, device=None):
    """The FAISS index over vocabulary embeddings (row i = vocab[i]); None without faiss or without the file.

    device "cuda": searched on the GPUs FAISS sees (exact indexes; index/gpu.py)."""
    return _load(Path(out_dir) / VOCAB_INDEX, device)


def load_relevance_index(out_dir, device=None):
    """The FAISS index over relevance rows (row r = channels[r]); None without faiss or without the file."""
    return _load(Path(out_dir) / RELEVANCE_INDEX, device)
