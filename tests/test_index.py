"""The atlas storage: HDF5 round trip, atomic writes, unfinished atlases, fingerprints, vocabularies."""

import numpy as np
import pytest
import torch

import index
from models.errors import AtlasError, AtlasFormatError
from models.files import atomic_path
from pipeline.config import vocabulary_entries
from pipeline.vocabulary import FACE_ATTRIBUTES, english_words, read_phrase_file, resolve


def _data(path, vocab=("red", "grün", "café au lait")):
    layers = [
        dict(index=0, kind="conv", resolution=4, width=3, w_index=0, in_atlas=True),
        dict(index=1, kind="torgb", resolution=4, width=2, w_index=1, in_atlas=False),
    ]
    rng = np.random.default_rng(0)
    rel = rng.standard_normal((3, 4)).astype(np.float32)
    emb = rng.standard_normal((len(vocab), 4)).astype(np.float32)  # FORMAT.md: unit rows (checked on open)
    return index.AtlasData(
        path=path,
        channels=np.array([[0, 0], [0, 1], [0, 2]]),
        relevance=rel / np.linalg.norm(rel, axis=1)[:, None],
        consistency=np.array([0.5, 0.1, 0.9], np.float32),
        style_mean=np.arange(3.0),
        style_std=np.ones(3),
        layer_mean=[np.arange(3.0), np.array([7.0, 8.0])],
        layer_std=[np.ones(3), np.array([0.5, 0.25])],
        layers=layers,
        vocab=list(vocab),
        vocab_embeddings=emb / np.linalg.norm(emb, axis=1)[:, None],
        templates=["a {}."],
        neutral="shape",
        neutral_embedding=np.full(4, 0.5, np.float32),
        labels_index=np.array([[0, 1]] * 3),
        labels_score=np.ones((3, 2), np.float32),
        config={"seed": 5},
        generator_fingerprint="g" * 64,
        embedder_fingerprint="e" * 64,
    )


def test_round_trip_and_unfinished_outputs(tmp_path):
    data = _data(tmp_path)
    index.write_atlas(data)
    with pytest.raises(AtlasFormatError, match="indexes stage did not finish"):
        index.read_atlas(tmp_path)
    back = index.read_atlas(tmp_path, require_complete=False)
    assert back.vocab == data.vocab and back.layers == data.layers and back.config == {"seed": 5}
    assert np.array_equal(back.layer_std[1], [0.5, 0.25]) and np.array_equal(back.relevance, data.relevance)
    assert back.style_mean.dtype == np.float64 and back.labels_index.dtype == np.int64
    index.write_catalog(data)
    with index.open_catalog(tmp_path) as con:
        assert con.execute("SELECT phrase FROM vocabulary ORDER BY id").fetchall() == [(p,) for p in data.vocab]


def test_atomic_write_gives_the_mode_a_plain_write_would(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_path(tmp_path / "atomic.txt") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_not_an_atlas(tmp_path):
    (tmp_path / "atlas.h5").write_bytes(b"not hdf5")
    with pytest.raises(AtlasFormatError, match="not a readable HDF5"):
        index.read_atlas(tmp_path, require_complete=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AtlasFormatError, match="no build was started"):
        index.read_atlas(tmp_path / "empty")


class ProtocolGenerator:
    z_dim = w_dim = 4
    style_dims = [3, 2]
    rgb_layers = [1]

    def __init__(self, scale=1.0):
        self.mean_w, self.scale = torch.zeros(4), scale

    def mapping(self, z):
        return z * self.scale

    def styles(self, ws):
        return [ws[:, :3], ws[:, 3:]]

    def synthesize(self, styles, noise_mode="const"):
        return torch.tanh(styles[0].sum(1) + styles[1].sum(1))[:, None, None, None].expand(-1, 3, 4, 4)


def test_protocol_fingerprints_follow_behaviour():
    a, b = index.fingerprint_generator(ProtocolGenerator()), index.fingerprint_generator(ProtocolGenerator())
    assert a == b and a.startswith("probe:")
    assert index.fingerprint_generator(ProtocolGenerator(scale=1.1)) != a
    module = torch.nn.Linear(2, 2)
    assert index.fingerprint_generator(module).startswith("state:")


def test_embedder_fingerprint_includes_templates(tiny_clip):
    one = index.fingerprint_embedder(tiny_clip, ["a {}."])
    assert one == index.fingerprint_embedder(tiny_clip, ["a {}."])
    assert one != index.fingerprint_embedder(tiny_clip, ["a photo of a {}."])


def test_vocabulary_selectors(tmp_path):
    faces = read_phrase_file(FACE_ATTRIBUTES)
    assert len(faces) >= 200 and "smiling" in faces and "curly hair" in faces
    assert not any(p.startswith("#") for p in faces)
    words = english_words(500)
    assert len(words) == 500 and all(w.isalpha() and len(w) >= 3 for w in words)
    assert {"red", "happy", "beautiful"} <= set(words) and "the" not in words and "ting" not in words
    both = resolve(vocabulary_entries("faces,english"), 300, "face")
    assert both[: len(faces)] == faces and len(both) == len(set(both)) and len(both) > len(faces)
    assert resolve(vocabulary_entries(["red", " red ", "big   red"]), 10, "face") == ["red", "big red"]
    f = tmp_path / "v.txt"
    f.write_text("# mine\nred\n\nblue\n", encoding="utf-8")
    assert resolve(vocabulary_entries([["green"], f]), 10, "face") == ["green", "red", "blue"]
    assert resolve(vocabulary_entries(str(f)), 10, "face") == ["red", "blue"]
    f.write_bytes("é\n".encode("latin-1"))
    with pytest.raises(AtlasError, match="not UTF-8"):
        read_phrase_file(f)
    f.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(AtlasError, match="no phrases"):
        read_phrase_file(f)
    with pytest.raises(AtlasError, match="does not exist"):
        resolve(vocabulary_entries("nonsense_selector"), 10, "face")
