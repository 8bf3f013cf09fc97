"""A build killed with SIGKILL (mid-relevance, then at a random moment) and restarted gives the atlas an
uninterrupted build gives, bit for bit."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import index
from models.errors import AtlasFormatError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = r'''
import sys, time
import torch
sys.path[:0] = [sys.argv[3], sys.argv[3].rsplit("/", 1)[0]]  # tests/, then this checkout before any install
from conftest import tiny_clip_config
torch.set_num_threads(1)  # after conftest, which sets two threads: the in-process reference runs on one
from models.clip import load_clip
from models.stylegan2 import small_generator
from pipeline import build_atlas

class Slow:
    """The tiny generator, slowed down so that the test can kill the build mid-relevance."""
    def __init__(self, gen, delay):
        self.gen, self.delay = gen, delay
    def __getattr__(self, name):
        return getattr(self.gen, name)
    def synthesize(self, styles, noise_mode="const"):
        time.sleep(self.delay)
        return self.gen.synthesize(styles, noise_mode=noise_mode)

gen = Slow(small_generator(seed=0, resolution=16, style_dim=16, width=8), float(sys.argv[2]))
build_atlas(gen, load_clip(tiny_clip_config(), seed=0), sys.argv[1], num_images=4, num_samples=600,
            stats_chunk_size=200, batch_size=4, chunk_channels=2, vocabulary=["red", "green", "smiling"],
            templates=["a photo of a {}.", "a {}."], neutral="shape", progress=False)
'''
ARRAYS = (
    "channels",
    "relevance",
    "consistency",
    "style_mean",
    "style_std",
    "vocab_embeddings",
    "neutral_embedding",
    "labels_index",
    "labels_score",
)


def _start(script, out, delay):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(out), str(delay), str(ROOT / "tests")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after_chunks(proc, chunks: Path, count: int) -> int:
    """SIGKILL the build once `chunks` holds `count` chunk files; returns how many there were then."""
    deadline = time.time() + 180
    while len(list(chunks.glob("chunk_*.npz"))) < count:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "the build never reached the relevance stage"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(list(chunks.glob("chunk_*.npz")))


def _finish(proc):
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the same as the subprocesses, so that float results agree bit for bit
    yield
    torch.set_num_threads(old)


def _reference(out):
    """The uninterrupted build, in this process (what the script does, without the slow-down)."""
    from conftest import tiny_clip_config

    from models.clip import load_clip
    from models.stylegan2 import small_generator
    from pipeline import build_atlas

    build_atlas(
        small_generator(seed=0, resolution=16, style_dim=16, width=8),
        load_clip(tiny_clip_config(), seed=0),
        out,
        num_images=4,
        num_samples=600,
        stats_chunk_size=200,
        batch_size=4,
        chunk_channels=2,
        vocabulary=["red", "green", "smiling"],
        templates=["a photo of a {}.", "a {}."],
        neutral="shape",
        progress=False,
    )


@pytest.mark.slow
def test_sigkill_twice_then_resume_is_bit_identical(tmp_path, one_thread):
    script = tmp_path / "build.py"
    script.write_text(SCRIPT)
    killed = _start(script, tmp_path / "resumed", 0.05)
    # 20 chunks planned; kill after the third
    done = kill_after_chunks(killed, tmp_path / "resumed" / "work" / "relevance", 3)
    assert 3 <= done < 20
    with pytest.raises(AtlasFormatError, match=f"relevance stage has {done} of 20 chunks"):
        index.read_atlas(tmp_path / "resumed")  # never an atlas that opens but is wrong

    # a second kill at a seeded random moment of the resumed run (relevance, vocabulary or assembly)
    again = _start(script, tmp_path / "resumed", 0.05)
    time.sleep(float(np.random.default_rng(7).uniform(4.0, 8.0)))  # start-up takes about 4 s
    os.kill(again.pid, signal.SIGKILL)
    again.wait()
    if not (tmp_path / "resumed" / "MANIFEST.json").exists():
        with pytest.raises(AtlasFormatError, match="incomplete"):
            index.read_atlas(tmp_path / "resumed")

    resumed = _start(script, tmp_path / "resumed", 0.0)
    _reference(tmp_path / "reference")
    _finish(resumed)
    a, b = index.read_atlas(tmp_path / "reference"), index.read_atlas(tmp_path / "resumed")
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.vocab == b.vocab and a.config == b.config
    assert a.generator_fingerprint == b.generator_fingerprint
