"""FAISS on GPUs (index/gpu.py): which indexes go to the GPUs and when, and that what is written and found is
what the CPU path writes and finds. No GPU here: faiss is given a stand-in for its GPU calls that records them
and computes on the CPU, so these tests cover the selection and the data flow, not GPU arithmetic."""

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from index.gpu import gpus_for, is_gpu, to_cpu  # noqa: E402
from index.search import build_ip_index, load_vocab_index, write_index  # noqa: E402


class GpuIndexFlatIP:
    """Stands in for faiss-gpu's index: the same searches, computed by a CPU copy."""

    def __init__(self, cpu):
        self.cpu = faiss.clone_index(cpu)

    def add(self, x):
        self.cpu.add(x)

    def search(self, q, k):
        return self.cpu.search(q, k)

    @property
    def ntotal(self):
        return self.cpu.ntotal


@pytest.fixture
def fake_gpus(monkeypatch):
    """faiss as a GPU build seeing two GPUs; returns the list of indexes moved to them."""
    moved = []

    def to_all_gpus(index, co=None, ngpu=-1):
        moved.append(type(index).__name__)
        return GpuIndexFlatIP(index)

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_all_gpus, raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: faiss.clone_index(index.cpu), raising=False)
    return moved


def vectors(n=300, d=16, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_this_install_and_cpu_devices_stay_on_the_cpu():
    assert gpus_for(None) == 0 and gpus_for("cpu") == 0 and gpus_for("mps") == 0
    if not hasattr(faiss, "index_gpu_to_cpu"):  # faiss-cpu: no GPU code, whatever --device says
        assert gpus_for("cuda") == 0
        assert type(build_ip_index(vectors(), device="cuda")).__name__ == "IndexFlatIP"


def test_cuda_builds_and_searches_exact_indexes_on_the_gpus(fake_gpus, tmp_path):
    x = vectors()
    assert gpus_for("cuda") == 2 and gpus_for("cuda:1") == 2 and gpus_for("auto") == 2 and gpus_for("cpu") == 0
    gpu, cpu = build_ip_index(x, device="cuda"), build_ip_index(x, device="cpu")
    assert is_gpu(gpu) and not is_gpu(cpu) and fake_gpus == ["IndexFlatIP"]
    q = x[:20] + 0.01
    for a, b in zip(gpu.search(q, 5), cpu.search(q, 5)):
        assert np.array_equal(a, b)
    write_index(gpu, tmp_path / "gpu.faiss")  # a CPU copy is written: the same file as the CPU path's
    write_index(cpu, tmp_path / "cpu.faiss")
    assert (tmp_path / "gpu.faiss").read_bytes() == (tmp_path / "cpu.faiss").read_bytes()
    assert type(to_cpu(gpu)).__name__ == "IndexFlatIP"


def test_hnsw_stays_on_the_cpu(fake_gpus):
    index = build_ip_index(vectors(), exact_limit=100, device="cuda")  # above exact_limit: HNSW, no GPU version
    assert type(index).__name__ == "IndexHNSWFlat" and fake_gpus == []


def test_assembly_and_query_on_cuda_match_the_cpu(fake_gpus, tmp_path):
    from pipeline.assemble import write_ip_index
    from pipeline.config import IndexConfig
    from query import Atlas
    from query.synthetic import synthetic_atlas_data

    data = synthetic_atlas_data(vocab=[f"phrase {i}" for i in range(40)], dim=16, seed=2, path=tmp_path)
    on_gpu = write_ip_index(data.vocab_embeddings, IndexConfig(), tmp_path / "gpu.faiss", device="cuda")
    on_cpu = write_ip_index(data.vocab_embeddings, IndexConfig(), tmp_path / "vocab.faiss", device=None)
    assert on_gpu == on_cpu and on_gpu["type"] == "IndexFlatIP"
    assert (tmp_path / "gpu.faiss").read_bytes() == (tmp_path / "vocab.faiss").read_bytes()
    assert is_gpu(load_vocab_index(tmp_path, device="cuda")) and not is_gpu(load_vocab_index(tmp_path))
    atlas = Atlas(data)
    expected = atlas.similar("phrase 3", 5)
    atlas.faiss_device = "cuda"
    assert atlas.similar("phrase 3", 5) == expected and fake_gpus.count("IndexFlatIP") == 3
