"""Text side (SPEC §4): templates, template-averaged phrase embeddings t(p), text directions Δt."""

import hashlib

import pytest
import torch
import torch.nn.functional as F

from models.errors import AtlasError, PromptError
from models.prompts import validate_prompt
from models.text import embed_phrases, load_templates, text_direction


class HashEmbedder:
    """A protocol-only embedder (no batch_size argument) with deterministic pseudo-random text embeddings."""

    dim = 16

    def __init__(self):
        self.calls = []

    def encode_text(self, texts):
        self.calls.append(len(texts))
        rows = [
            torch.tensor(list(hashlib.sha256(t.encode()).digest()[:16]), dtype=torch.float32) - 127.5 for t in texts
        ]
        return F.normalize(torch.stack(rows), dim=-1)

    def encode_image(self, images):
        raise NotImplementedError


def test_default_templates_are_the_79_imagenet_templates():
    templates = load_templates()
    assert len(templates) == 79 and len(set(templates)) == 79
    assert all("{}" in t for t in templates)
    assert "a bad photo of a {}." in templates


def test_user_template_file_is_validated(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("a photo of {}.\n\n  a drawing of {}  \n", encoding="utf-8")
    assert load_templates(good) == ["a photo of {}.", "a drawing of {}"]
    (tmp_path / "no_slot.txt").write_text("a photo of {}.\na photo\n")
    (tmp_path / "latin1.txt").write_bytes("une photo d'un {} à Paris\n".encode("latin-1"))
    (tmp_path / "blank.txt").write_text("\n  \n")
    for name, match in [
        ("no_slot.txt", "template 2 .*has no"),
        ("latin1.txt", "not UTF-8"),
        ("blank.txt", "no templates"),
        ("missing.txt", "does not exist"),
    ]:
        with pytest.raises(AtlasError, match=match):
            load_templates(tmp_path / name)


def test_embed_phrases_equals_a_per_phrase_loop(tiny_clip):
    phrases, templates = ["smiling", "red hair", "a very old man with a long grey beard"], load_templates()[:12]
    together = embed_phrases(tiny_clip, phrases, templates, batch_size=7)
    for i, phrase in enumerate(phrases):
        per_template = F.normalize(tiny_clip.encode_text([t.replace("{}", phrase) for t in templates]), dim=-1)
        t_p = F.normalize(per_template.mean(0), dim=0)
        assert torch.allclose(together[i], t_p, atol=1e-5)
    assert together.shape == (3, tiny_clip.dim)
    assert torch.allclose(together.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_embed_phrases_uses_the_79_templates_by_default(tiny_clip):
    default = embed_phrases(tiny_clip, ["smiling"])
    explicit = embed_phrases(tiny_clip, ["smiling"], load_templates())
    only_first = embed_phrases(tiny_clip, ["smiling"], load_templates()[:1])
    assert torch.allclose(default, explicit, atol=1e-6)
    assert not torch.allclose(default, only_first, atol=1e-3)


def test_embed_phrases_batches_all_texts_together_for_any_embedder():
    embedder = HashEmbedder()
    templates = ["a photo of {}.", "{} in a painting", "the {}"]
    out = embed_phrases(embedder, ["cat", "dog", "car", "tree", "sky"], templates, batch_size=4)
    assert embedder.calls == [4, 4, 4, 3]  # 15 texts in batches of 4, not one call per phrase
    assert out.shape == (5, 16)
    cat = F.normalize(embedder.encode_text([t.replace("{}", "cat") for t in templates]).mean(0), dim=0)
    assert torch.allclose(out[0], cat, atol=1e-6)


def test_phrase_with_braces_is_inserted_literally():
    embedder = HashEmbedder()
    out = embed_phrases(embedder, ["{x}"], ["a photo of {}."])
    assert torch.allclose(out[0], embedder.encode_text(["a photo of {x}."])[0], atol=1e-6)


@pytest.mark.parametrize("bad", ["", "  ", None, 7])
def test_embed_phrases_rejects_empty_or_non_text_phrases(bad):
    with pytest.raises(PromptError):
        embed_phrases(HashEmbedder(), ["fine", bad], ["a {}"])


def test_text_direction_is_the_unit_difference():
    t_target, t_neutral = F.normalize(torch.tensor([1.0, 2.0, 0.5]), dim=0), F.normalize(torch.ones(3), dim=0)
    delta_t = text_direction(t_target, t_neutral)
    assert torch.allclose(delta_t.norm(), torch.tensor(1.0), atol=1e-6)
    assert torch.allclose(delta_t, F.normalize(t_target - t_neutral, dim=0), atol=1e-6)
    assert text_direction(t_neutral, t_target) @ delta_t < -0.999  # swapping the prompts flips Δt


def test_identical_target_and_neutral_raise(tiny_clip):
    t = embed_phrases(tiny_clip, ["face", "face"], ["a photo of a {}."])
    with pytest.raises(PromptError, match="same embedding"):
        text_direction(t[0], t[1])


def test_validate_prompt_strips_and_rejects_empty():
    assert validate_prompt("  red hair \n") == "red hair"
    for bad in ["", " \t", None, b"bytes"]:
        with pytest.raises(PromptError):
            validate_prompt(bad)
