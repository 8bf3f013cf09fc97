"""add_vocabulary: an atlas grown by new phrases equals one built with them from the start, refuses another
CLIP, leaves relevance alone, and a run killed at any write leaves an atlas that opens (the old or the grown)."""

import json
import os
import shutil
import signal
import time

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import tiny_generator

import index
from models.errors import AtlasFormatError

OLD = ["red", "green", "smiling", "shape"]
NEW = ["blue", "red", "big square", "dark", "light"]  # "red" is there already
SMALL = dict(
    num_images=2,
    num_samples=300,
    stats_chunk_size=150,
    batch_size=12,
    chunk_channels=7,
    templates=["a photo of a {}.", "a {}."],
    chunk_phrases=3,
    neutral="shape",
    progress=False,
)
ARRAYS = ("channels", "relevance", "consistency", "style_mean", "style_std", "neutral_embedding", "labels_index")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread for the module


@pytest.fixture(scope="module")
def gen():
    return tiny_generator()


@pytest.fixture(scope="module")
def built(gen, tiny_clip, tmp_path_factory):
    """(the atlas with OLD, the atlas built with OLD + NEW from the start)."""
    from pipeline import build_atlas

    root = tmp_path_factory.mktemp("grow")
    build_atlas(gen, tiny_clip, root / "old", vocabulary=OLD, **SMALL)
    build_atlas(gen, tiny_clip, root / "full", vocabulary=[OLD, NEW], **SMALL)
    return root / "old", root / "full"


def _catalog_rows(folder):
    con = index.open_catalog(folder)
    try:
        tables = {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("layers", "channels", "vocabulary", "labels")
        }
        tables["builds"] = con.execute("SELECT vocabulary_size, config, extra FROM builds").fetchall()
    finally:
        con.close()
    return tables


def assert_same_atlas(a_dir, b_dir):
    a, b = index.read_atlas(a_dir), index.read_atlas(b_dir)
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    # phrases embedded in other batches: equal up to float rounding of the text encoder's batching
    assert np.allclose(a.vocab_embeddings, b.vocab_embeddings, rtol=0, atol=2e-6)
    assert np.allclose(a.labels_score, b.labels_score, rtol=0, atol=2e-6, equal_nan=True)
    assert a.vocab == b.vocab and a.templates == b.templates and a.neutral == b.neutral
    assert a.config == b.config and a.extra == b.extra
    assert a.embedder_fingerprint == b.embedder_fingerprint
    ca, cb = _catalog_rows(a_dir), _catalog_rows(b_dir)
    for table in ca:
        if table in ("labels", "channels"):  # scores are REAL: compare all but the float columns exactly
            assert [r[:-1] for r in ca[table]] == [r[:-1] for r in cb[table]], table
        else:
            assert ca[table] == cb[table], table
    assert (
        json.loads((a_dir / "MANIFEST.json").read_text())["files"].keys()
        == json.loads((b_dir / "MANIFEST.json").read_text())["files"].keys()
    )
    va, vb = index.load_vocab_index(a_dir), index.load_vocab_index(b_dir)
    q = b.vocab_embeddings[:4]
    assert np.array_equal(va.search(q, 3)[1], vb.search(q, 3)[1])


def test_grown_atlas_equals_full_build(built, tiny_clip, tmp_path):
    from pipeline import add_vocabulary
    from query import Atlas

    old, full = built
    grown = tmp_path / "atlas"
    shutil.copytree(old, grown)
    before = (grown / "relevance.faiss").read_bytes()
    report = add_vocabulary(grown, tiny_clip, NEW)
    assert report.status == "grown" and report.added == ["blue", "big square", "dark", "light"]
    assert report.already == 1 and report.vocabulary == 8 and report.texts_encoded == 4 * 2
    assert_same_atlas(grown, full)
    assert (grown / "relevance.faiss").read_bytes() == before  # relevance untouched
    assert sorted(os.listdir(tmp_path)) == ["atlas"]  # no staging left beside it
    atlas = Atlas.open(grown)  # a new phrase now answers without CLIP
    assert atlas.direction("dark", top_k=3).num_c == 3
    assert atlas.similar("dark", 2)[0][0] != "dark"

    again = add_vocabulary(grown, tiny_clip, ["dark", "blue"])
    assert again.status == "nothing to add" and again.already == 2 and again.texts_encoded == 0


def test_refuses_another_clip(built, tmp_path):
    from helpers import tiny_clip_config

    from models.clip import load_clip
    from pipeline import add_vocabulary

    grown = tmp_path / "atlas"
    shutil.copytree(built[0], grown)
    other = load_clip(tiny_clip_config(), seed=1)
    with pytest.raises(AtlasFormatError, match="built with CLIP"):
        add_vocabulary(grown, other, ["blue"])
    assert index.read_atlas(grown).vocab == OLD


def test_cli_add_vocabulary(built, tmp_path):
    from helpers import tiny_clip_config

    from pipeline.cli import main

    grown = tmp_path / "atlas"
    shutil.copytree(built[0], grown)
    phrases = tmp_path / "more.txt"
    phrases.write_text("# colours\nblue\n\nred\n")
    same, other = tmp_path / "clip.json", tmp_path / "other.json"
    same.write_text(json.dumps(tiny_clip_config()))  # seed 0: the atlas's CLIP
    other.write_text(json.dumps(tiny_clip_config(layers=1)))
    args = ["add-vocabulary", "--out", str(grown), "--device", "cpu", str(phrases), "--json", "--random-weights"]
    with pytest.raises(SystemExit) as exit_info:  # another CLIP: one line, exit 2, the atlas as it was
        main(args + ["--clip", str(other)])
    assert exit_info.value.code == 2 and index.read_atlas(grown).vocab == OLD
    from pipeline.cli import cli

    result = CliRunner().invoke(cli, args + ["--clip", str(same)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "grown" and report["added"] == ["blue"] and report["already"] == 1
    assert index.read_atlas(grown).vocab == OLD + ["blue"]


def _killed_at(n, target, embedder) -> int:
    """Run add_vocabulary in a forked child that SIGKILLs itself before its n-th file operation (each file that
    lands, each swap step); return the child's exit status (-SIGKILL, or 0 when it had fewer operations)."""
    import index.swap

    pid = os.fork()
    if pid == 0:  # the child: no cleanup of any kind runs, as with kill -9
        try:
            from pipeline.grow import add_vocabulary

            calls = [0]

            def killing(fn):
                def wrapped(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == n:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return fn(*args, **kwargs)

                return wrapped

            os.replace, os.link = killing(os.replace), killing(os.link)
            index.swap.exchange = killing(index.swap.exchange)
            add_vocabulary(target, embedder, NEW)
        finally:
            os._exit(0)
    deadline = time.time() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"add_vocabulary killed at operation {n} hung")
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_killed_at_every_write_leaves_an_atlas_that_opens(built, tiny_clip, tmp_path):
    """SIGKILL before the 1st, 2nd, ... file operation of add_vocabulary: the folder always opens as the old atlas
    (or, once swapped, the grown one); a rerun finishes the job and equals the full build."""
    from pipeline import add_vocabulary

    old, full = built
    old_vocab, new_vocab = OLD, index.read_atlas(full).vocab
    seen, n = [], 1
    while True:
        target = tmp_path / f"atlas{n}"
        shutil.copytree(old, target)
        status = _killed_at(n, target, tiny_clip)
        vocab = index.read_atlas(target).vocab  # opens, whole, at every point
        assert vocab in (old_vocab, new_vocab), vocab
        if status == 0:
            break
        assert status == -signal.SIGKILL
        seen.append("old" if vocab == old_vocab else "grown")
        add_vocabulary(target, tiny_clip, NEW)  # resumes (or finds nothing left to add) and cleans up
        assert_same_atlas(target, full)
        assert not (tmp_path / f".atlas{n}.grow").exists()
        shutil.rmtree(target)
        n += 1
    assert n > 6 and seen[0] == "old" and seen[-1] == "grown"  # killed before the swap and after it
