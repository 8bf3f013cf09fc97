"""A build killed with SIGKILL (mid-relevance, then at a random moment) and restarted gives the atlas an
uninterrupted build gives, bit for bit."""

import os
import signal
import time

import numpy as np
import pytest
from helpers import assert_same_atlas, finish, kill_after_chunks, start_slow_build, tiny_models

import index
from models.errors import AtlasFormatError
from pipeline import build_atlas

BUILD = dict(
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
    killed = start_slow_build(tmp_path / "resumed", 0.05, BUILD)
    # 20 chunks planned; kill after the third
    done = kill_after_chunks(killed, tmp_path / "resumed" / "work" / "relevance", 3)
    assert 3 <= done < 20
    with pytest.raises(AtlasFormatError, match=f"relevance stage has {done} of 20 chunks"):
        index.read_atlas(tmp_path / "resumed")  # never an atlas that opens but is wrong

    # a second kill at a seeded random moment of the resumed run (relevance, vocabulary or assembly)
    again = start_slow_build(tmp_path / "resumed", 0.05, BUILD)
    time.sleep(float(np.random.default_rng(7).uniform(4.0, 8.0)))  # start-up takes about 4 s
    os.kill(again.pid, signal.SIGKILL)
    again.wait()
    if not (tmp_path / "resumed" / "MANIFEST.json").exists():
        with pytest.raises(AtlasFormatError, match="incomplete"):
            index.read_atlas(tmp_path / "resumed")

    resumed = start_slow_build(tmp_path / "resumed", 0.0, BUILD)
    build_atlas(*tiny_models(), tmp_path / "reference", **BUILD)  # the uninterrupted build, in this process
    finish(resumed)
    a, b = assert_same_atlas(tmp_path / "reference", tmp_path / "resumed")
    assert a.generator_fingerprint == b.generator_fingerprint
