"""Small things users hit (issue 16, item 5), one test each."""

import io

import pytest
from helpers import query_error, tiny_models

from pipeline.common import LogProgress, bar


def test_english_selector_leaves_out_function_words():
    pytest.importorskip("open_clip")
    from pipeline.vocabulary import english_words

    words = english_words(10_000)
    assert len(words) == 10_000
    for word in ("about", "after", "other", "these", "only", "where", "much", "being", "would", "through"):
        assert word not in words
    for word in ("red", "happy", "smile", "hair", "beautiful", "old"):  # content words stay
        assert word in words


def test_progress_in_a_log_is_a_few_lines_not_a_flood():
    log = io.StringIO()  # not a terminal, like a file or a pipe
    with bar(10_000, "vocabulary", "phrase", True, stream=log) as pbar:
        assert isinstance(pbar, LogProgress)
        for _ in range(10_000):
            pbar.update(1)
    lines = log.getvalue().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("vocabulary: 10,000/10,000 phrase (100%)")
    assert "\r" not in log.getvalue()

    slow = io.StringIO()  # a long run: one line per interval with the time left
    progress = LogProgress(100, "channel relevance", "render", slow, every=0.0)
    progress.update(25)
    progress.close()
    first, last = slow.getvalue().splitlines()
    assert "25/100 render (25%)" in first and "left" in first and "100/100" not in last and "25/100" in last


def test_progress_on_a_terminal_is_a_bar_and_off_when_disabled():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert not isinstance(bar(10, "x", "y", True, stream=Terminal()), LogProgress)
    quiet = io.StringIO()
    with bar(10, "x", "y", False, stream=quiet) as pbar:
        pbar.update(10)
    assert quiet.getvalue() == ""


def test_vocabulary_progress_moves_every_thousand_encodes_or_so(tmp_path, monkeypatch, capsys):
    import torch
    import torch.nn.functional as F

    import pipeline.common
    from pipeline import vocabulary as vocab_stage
    from pipeline.config import VocabularyConfig

    class Embedder:  # counts the texts of every encode call
        dim, calls = 4, []

        def encode_text(self, texts, batch_size=256):
            self.calls.append(len(texts))
            return F.normalize(torch.randn(len(texts), 4, generator=torch.Generator().manual_seed(len(texts))), dim=-1)

    monkeypatch.setattr(pipeline.common, "LOG_EVERY", 0.0)  # a progress line at every update
    templates = [f"a {{}} number {i}." for i in range(79)]
    phrases = [f"phrase {i}" for i in range(300)]
    cfg = VocabularyConfig(chunk_phrases=256, text_batch_size=256)
    encoded = vocab_stage.run(Embedder(), phrases, templates, "shape", cfg, tmp_path, [0, 1], show=True)
    assert encoded == 301 * 79  # the phrases and the neutral
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("vocabulary:")]
    assert len(lines) >= 300 * 79 // 1100  # was one line per 256-phrase chunk (20,224 encodes)
    assert max(Embedder.calls) <= 4 * 256 and sum(Embedder.calls) == 301 * 79
    emb, _ = vocab_stage.load(tmp_path, 300, cfg)
    assert emb.shape == (300, 4)


def _atlas():
    from query import Atlas
    from query.synthetic import synthetic_atlas_data

    return Atlas(synthetic_atlas_data(vocab=["red", "green", "blue", "dark"], dim=8, seed=4))


def test_top_lists_only_the_channels_the_direction_moves():
    atlas = _atlas()
    d = atlas.direction("red", top_k=3)
    assert d.num_c == 3 and len(d.top(10)) == 3 and len(d.to_dict(10)["top"]) == 3
    strongest = max(abs(d.scores))
    d = atlas.direction("red", beta=float(strongest) * 0.9)  # only a few pass beta
    listed = d.top(10)
    assert len(listed) == d.num_c < 10
    assert all(abs(s) >= d.beta for _, _, s in listed)
    assert {(l, c) for l, c, _ in listed} == {tuple(atlas.data.channels[r]) for r in d.active}


def test_export_formats_of_one_stem_keep_their_own_manifests(tmp_path):
    import json

    from query.export import export_library, manifest_path

    atlas = _atlas()
    for suffix in (".h5", ".npz", ".pt"):
        export_library(atlas, ["red", "green"], tmp_path / f"lib{suffix}", beta=0.01)
    names = sorted(p.name for p in tmp_path.glob("*.manifest.json"))
    assert names == ["lib.h5.manifest.json", "lib.npz.manifest.json", "lib.pt.manifest.json"]
    for suffix in (".h5", ".npz", ".pt"):
        manifest = json.loads(manifest_path(tmp_path / f"lib{suffix}").read_text())
        assert manifest["file"] == f"lib{suffix}" and manifest["format"] == suffix[1:]


SMALL = dict(
    num_images=2,
    num_samples=300,
    stats_chunk_size=100,
    batch_size=8,
    chunk_channels=8,
    vocabulary=["red", "green", "blue", "shape"],
    templates=["a photo of a {}.", "a {}."],
    neutral="shape",
    progress=False,
)


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.mark.slow
def test_dry_run_estimates_time_and_says_what_a_partial_build_has(models, tmp_path, capsys, monkeypatch):
    import pipeline.estimate
    from pipeline import run_build
    from pipeline.cli import print_plan

    monkeypatch.setattr(pipeline.estimate, "PROBE_SECONDS", 0.3)  # a quick probe: the arithmetic is what is tested

    gen, clip = models
    out = tmp_path / "atlas"
    fresh = run_build(gen, clip, out, dry_run=True, **SMALL)
    assert fresh.estimate["state"] == "new" and fresh.estimate["seconds"]["total"] > 0
    assert all(done == 0 for done, _ in fresh.estimate["done"].values())
    assert fresh.estimate["done"]["relevance"][1] == fresh.renders_planned
    assert run_build(gen, clip, out, shard="0/2", **SMALL).status == "shard done"  # half of the chunks
    # from here the fresh probe's per-unit times: two probes on a busy machine can differ several-fold
    monkeypatch.setattr(pipeline.estimate, "unit_seconds", lambda *args: fresh.estimate["per_unit"])
    half = run_build(gen, clip, out, dry_run=True, **SMALL).estimate
    assert half["state"] == "partial"
    assert 0 < half["done"]["relevance"][0] < half["done"]["relevance"][1]
    assert half["done"]["stats"][0] == half["done"]["stats"][1] == 300  # every shard maps all the samples
    left = half["seconds"]["relevance"] / fresh.estimate["seconds"]["relevance"]
    assert left == pytest.approx(1 - half["done"]["relevance"][0] / half["done"]["relevance"][1], rel=1e-9)
    report = run_build(gen, clip, out, dry_run=True, **SMALL)
    print_plan(report)
    text = capsys.readouterr().out
    assert "a partial build of this plan" in text and "estimated time: about" in text and "renders done" in text
    other = run_build(gen, clip, out, dry_run=True, **{**SMALL, "num_images": 3}).estimate
    assert other["state"] == "other" and other["done"]["relevance"][0] == 0


@pytest.mark.slow
def test_query_messages_name_the_flag_not_the_keyword(models, tmp_path, capsys):
    from pipeline import build_atlas

    gen, clip = models
    build_atlas(gen, clip, tmp_path / "atlas", **SMALL)
    for args, flag in ((["--top-k", "0"], "--top-k must be at least 1"), (["--beta", "0.99"], "or --top-k N")):
        err = query_error(capsys, "direction", "red", "--atlas", str(tmp_path / "atlas"), *args)
        assert flag in err and "top_k" not in err, err
