"""FAISS on GPUs: with a CUDA device and a faiss build that sees GPUs (the `gpu` extra: faiss-gpu), exact
inner-product indexes are built and searched there (`faiss.index_cpu_to_all_gpus`); files are always written
from a CPU copy, so an atlas built on GPUs is the same atlas.

Only the exact IndexFlatIP moves: FAISS has no GPU HNSW, so the approximate index of a vocabulary above
`exact_limit` stays on the CPU. Exact search on the GPU computes the same inner products in another order
(float32), so scores agree to rounding and the neighbours agree except between near-ties.
"""

from __future__ import annotations


def gpus_for(device) -> int:
    """How many GPUs FAISS should use for `device`: all it sees for "cuda"/"cuda:N" and "auto", 0 otherwise."""
    if device is None or not (str(device).startswith("cuda") or str(device) == "auto"):
        return 0
    try:
        import faiss
    except ImportError:
        return 0
    count = getattr(faiss, "get_num_gpus", None)
    if count is None or not hasattr(faiss, "index_cpu_to_all_gpus") or not hasattr(faiss, "index_gpu_to_cpu"):
        return 0  # faiss-cpu: no GPU code compiled in
    try:
        return max(int(count()), 0)
    except RuntimeError:  # a GPU build on a machine whose driver is missing
        return 0


def to_device(index, device):
    """`index` on every GPU FAISS sees when `device` is CUDA and the index type runs there, else `index`."""
    if not gpus_for(device):
        return index
    import faiss

    if not isinstance(index, faiss.IndexFlat):  # HNSW and the rest: CPU only
        return index
    return faiss.index_cpu_to_all_gpus(index)


def to_cpu(index):
    """A CPU copy of a GPU index (for writing); a CPU index as it is."""
    try:
        import faiss
    except ImportError:
        return index
    back = getattr(faiss, "index_gpu_to_cpu", None)
    if back is None or not is_gpu(index):
        return index
    return back(index)


def is_gpu(index) -> bool:
    """True for GpuIndex* objects and the shards/replicas FAISS builds over several GPUs."""
    name = type(index).__name__
    return name.startswith("Gpu") or name in ("IndexReplicas", "IndexShards")
