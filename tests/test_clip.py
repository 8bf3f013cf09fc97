"""CLIP embedder: unit embeddings, CLIP's preprocessing on tensors, the fast text path, loading weights safely."""

import io
import json
import pickle
import warnings
import zipfile

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_clip_config
from PIL import Image
from safetensors.torch import save_file

from models.clip import ClipEmbedder, PromptTruncatedWarning, causal_text_tower, load_clip
from models.errors import CheckpointError, PromptError

PROMPTS = [
    "a",
    "a photo of a smiling face",
    "an extremely detailed oil painting of a red sports car parked "
    "beside an old stone bridge at sunset, with long shadows",
    "hair",
    "a bad photo of the {} big dog",
]


def striped_image(h, w, seed=0) -> np.ndarray:
    """[h, w, 3] uint8: colour waves plus stripes about 9 px apart, fine enough that antialiasing matters."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    phase = rng.uniform(0, 6, size=3)
    img = np.stack(
        [
            0.5 + 0.25 * np.sin(6 * xx + 2 * yy + phase[0]) + 0.2 * np.sin(60 * xx),
            0.5 + 0.4 * np.cos(5 * yy - 3 * xx + phase[1]),
            0.5 + 0.25 * np.sin(4 * (xx + yy) + phase[2]) + 0.2 * np.cos(60 * yy),
        ],
        -1,
    )
    return (img * 255).round().astype(np.uint8)


def plain_text(embedder, texts):
    """open_clip's own encode_text on its own tokenizer, unit-normalised: the reference for the fast path."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return F.normalize(embedder.model.encode_text(open_clip.tokenize(texts, embedder.context_length)), dim=-1)


def test_embeddings_are_unit_norm_with_the_model_dimension(tiny_clip):
    images = torch.rand(3, 3, 40, 48) * 2 - 1
    assert tiny_clip.encode_image(images).shape == (3, tiny_clip.dim) == (3, 32)
    assert torch.allclose(tiny_clip.encode_image(images).norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(tiny_clip.encode_text(PROMPTS).norm(dim=-1), torch.ones(len(PROMPTS)), atol=1e-5)


def test_batched_equals_unbatched(tiny_clip):
    images = torch.rand(5, 3, 32, 32) * 2 - 1
    assert torch.allclose(tiny_clip.encode_image(images, batch_size=2), tiny_clip.encode_image(images), atol=1e-5)
    one_by_one = torch.cat([tiny_clip.encode_text([p]) for p in PROMPTS])
    assert torch.allclose(tiny_clip.encode_text(PROMPTS, batch_size=2), one_by_one, atol=1e-5)


def test_fast_text_path_matches_plain_open_clip_and_skips_padding(tiny_clip):
    assert causal_text_tower(tiny_clip.model) is not None
    seen = []
    hook = tiny_clip.model.transformer.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PromptTruncatedWarning)
            texts = PROMPTS + ["word " * 90]  # one prompt longer than the context
            fast = tiny_clip.encode_text(texts)
    finally:
        hook.remove()
    assert (fast - plain_text(tiny_clip, texts)).abs().max() < 1e-5
    assert min(seen) < 10 and max(seen) == 77  # short prompts ran on a few positions, the long one on all


@pytest.mark.parametrize("text_cfg", [dict(qk_norm=True), dict(pool_type="eos", eos_id=49407)])
def test_fast_text_path_covers_custom_blocks_and_eos_pooling(text_cfg):
    embedder = load_clip(tiny_clip_config(**text_cfg), seed=2)
    assert causal_text_tower(embedder.model) is not None
    assert (embedder.encode_text(iter(PROMPTS)) - plain_text(embedder, PROMPTS)).abs().max() < 1e-5


def test_non_causal_text_tower_falls_back_to_the_model_path():
    embedder = load_clip(tiny_clip_config(no_causal_mask=True), seed=1)
    assert causal_text_tower(embedder.model) is None
    assert (embedder.encode_text(PROMPTS) - plain_text(embedder, PROMPTS)).abs().max() < 1e-5


def test_long_prompt_warns_and_is_truncated(tiny_clip):
    long_prompt = "a portrait of a person with " + "very " * 80 + "curly hair"
    with pytest.warns(PromptTruncatedWarning, match="a portrait of a person"):
        emb = tiny_clip.encode_text([long_prompt])
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptTruncatedWarning)
        tiny_clip.encode_text(["a portrait of a person with curly hair"])  # short: no warning
    cut = "a portrait of a person with " + "very " * 80 + "straight hair"  # differs only after token 77
    with pytest.warns(PromptTruncatedWarning):
        assert torch.allclose(emb, tiny_clip.encode_text([cut]), atol=1e-6)


@pytest.mark.parametrize("bad", ["", "   \n", None, 3])
def test_empty_or_non_text_prompt_raises(tiny_clip, bad):
    with pytest.raises(PromptError):
        tiny_clip.encode_text(["fine", bad])


@pytest.mark.parametrize("h, w", [(60, 84), (84, 60), (45, 45)])
def test_tensor_preprocessing_matches_open_clip_pil_transform(tiny_clip, h, w):
    pixels = striped_image(h, w, seed=h + w)
    transform = open_clip.image_transform(tiny_clip.image_size, is_train=False, mean=tiny_clip.mean, std=tiny_clip.std)
    reference = transform(Image.fromarray(pixels))  # [3, S, S], normalised
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, h, w] in [-1, 1]
    ours = tiny_clip.preprocess(tensor)[0]
    mean, std = torch.tensor(tiny_clip.mean).view(3, 1, 1), torch.tensor(tiny_clip.std).view(3, 1, 1)
    assert ours.shape == reference.shape == (3, 32, 32)
    assert ((ours - reference) * std).abs().max() < 1e-2  # per pixel, in [0, 1] intensity (no antialias: > 0.017)
    assert (ours * std + mean).std() > 0.1  # the comparison is on real content


def test_gradients_flow_to_the_input_image(tiny_clip):
    for mode in ("clip", "pool"):
        images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
        target = tiny_clip.encode_text(["a red face"])
        loss = (1 - (tiny_clip.encode_image(images, preprocess=mode) * target).sum(-1)).sum()
        loss.backward()
        assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_pool_preprocess_averages_to_the_input_size(tiny_clip):
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    x = tiny_clip.preprocess(images, preprocess="pool")
    expected = (F.avg_pool2d((images + 1) / 2, 2) - torch.tensor(tiny_clip.mean).view(1, 3, 1, 1)) / torch.tensor(
        tiny_clip.std
    ).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-6)


def test_wrapping_a_trainable_model_keeps_gradients_for_its_weights():
    model = open_clip.CLIP(**tiny_clip_config())
    embedder = ClipEmbedder(model)
    loss = embedder.encode_text(["a cat"]).sum() + embedder.encode_image(torch.zeros(1, 3, 32, 32)).sum()
    loss.backward()
    assert model.token_embedding.weight.grad is not None and model.visual.conv1.weight.grad is not None


def test_random_init_is_seeded():
    assert load_clip(tiny_clip_config(), seed=3).fingerprint() == load_clip(tiny_clip_config(), seed=3).fingerprint()
    assert load_clip(tiny_clip_config(), seed=3).fingerprint() != load_clip(tiny_clip_config(), seed=4).fingerprint()


def test_saved_weights_load_offline_with_identical_embeddings(tiny_clip, tmp_path):
    images = torch.rand(2, 3, 40, 40) * 2 - 1
    sd = {k: v.clone() for k, v in tiny_clip.model.state_dict().items()}
    save_file(sd, tmp_path / "clip.safetensors")
    torch.save(sd, tmp_path / "clip.pt")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "train.pt")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_clip_config()))
    for name in ("clip.safetensors", "clip.pt", "train.pt"):
        loaded = load_clip(str(config), pretrained=tmp_path / name, seed=99)
        assert loaded.fingerprint() == tiny_clip.fingerprint()
        assert torch.equal(loaded.encode_image(images), tiny_clip.encode_image(images))
        assert torch.equal(loaded.encode_text(PROMPTS), tiny_clip.encode_text(PROMPTS))


def test_torchscript_archive_is_read_without_running_its_code(tiny_clip, tmp_path, monkeypatch):
    model = open_clip.CLIP(**tiny_clip_config()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(model).save(str(tmp_path / "ts.pt"))
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load was called"))
    with pytest.warns(UserWarning, match="QuickGELU"):
        loaded = load_clip(tiny_clip_config(), pretrained=tmp_path / "ts.pt")
    assert loaded.fingerprint() == ClipEmbedder(model).fingerprint()
    with torch.no_grad():
        assert torch.allclose(loaded.encode_text(PROMPTS), ClipEmbedder(model).encode_text(PROMPTS), atol=1e-6)


def test_torchscript_archive_with_foreign_globals_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    pickle.dump(Evil(), buf, protocol=2)
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as zf:
        zf.writestr("evil/data.pkl", buf.getvalue())
        zf.writestr("evil/code/__torch__/m.py", "")
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_clip(tiny_clip_config(), pretrained=tmp_path / "evil.pt")


def test_missing_corrupt_and_wrong_kind_files_raise_one_line_errors(tiny_clip, tmp_path):
    sd = tiny_clip.model.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "good.safetensors")
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    torch.save(dict(sd), tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:5000])
    torch.save({"g_ema": {"style.1.weight": torch.zeros(4, 4)}, "latent_avg": torch.zeros(4)}, tmp_path / "gan.pt")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    wider = load_clip(tiny_clip_config(width=32, heads=2), seed=0).model.state_dict()
    torch.save(wider, tmp_path / "wider.pt")
    (tmp_path / "empty.bin").write_bytes(b"")
    cases = {
        "nope.pt": "does not exist",
        "cut.safetensors": "safetensors",
        "cut.pt": "corrupt",
        "gan.pt": "StyleGAN2",
        "other.pt": "not a CLIP state dict",
        "wider.pt": "does not match",
        "empty.bin": "empty",
    }
    for name, match in cases.items():
        with pytest.raises(CheckpointError, match=match) as err:
            load_clip(tiny_clip_config(), pretrained=tmp_path / name)
        assert "\n" not in str(err.value), name


def test_bad_model_configs_raise_checkpoint_errors(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_clip(str(tmp_path / "broken.json"))
    with pytest.raises(CheckpointError, match="lacks text_cfg"):
        load_clip({"embed_dim": 8, "vision_cfg": {}})
    with pytest.raises(CheckpointError, match="invalid"):
        load_clip({**tiny_clip_config(), "vision_cfg": {"no_such_option": 1}})
    wrapped = load_clip({"model_cfg": tiny_clip_config(), "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}})
    assert (wrapped.mean, wrapped.std) == ((0.5,) * 3, (0.25,) * 3)  # open_clip_config.json layout
    with pytest.raises(CheckpointError, match="not an open_clip model name"):
        load_clip("ViT-Q-99")


def test_pretrained_tag_offline_without_cache_says_to_pass_a_path(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty hub cache
    with pytest.raises(CheckpointError, match="not available offline.*local checkpoint path") as err:
        load_clip("ViT-B-32-quickgelu", pretrained="openai")
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="neither a pretrained tag"):
        load_clip("ViT-B-32", pretrained="no-such-tag")


def test_demo_clip_loads_or_says_it_is_missing():
    from models.clip import DEMO_DIR

    if (DEMO_DIR / "clip_config.json").exists() and (DEMO_DIR / "clip.safetensors").exists():
        demo = load_clip("demo")
        assert demo.describe()["name"] == "demo"
        assert torch.allclose(demo.encode_text(["a red circle"]).norm(dim=-1), torch.ones(1), atol=1e-5)
    else:
        with pytest.raises(CheckpointError, match="demo CLIP"):
            load_clip("demo")


def test_describe_and_fingerprint_follow_weights_and_preprocessing(tiny_clip):
    d = tiny_clip.describe()
    assert (d["image_size"], d["context_length"], d["pretrained"]) == (32, 77, None)
    assert len(d["mean"]) == len(d["std"]) == 3
    other = load_clip({**tiny_clip_config(), "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}, seed=0)
    assert other.mean == (0.5, 0.5, 0.5)
    assert other.fingerprint() != tiny_clip.fingerprint()  # same weights, other normalisation


def test_named_vit_b_32_random_weights():
    embedder = load_clip("ViT-B-32", pretrained=None)
    assert (embedder.dim, embedder.image_size, embedder.context_length) == (512, 224, 77)
    texts = ["a", "a photo of a smiling face with blond hair"]
    assert (embedder.encode_text(texts) - plain_text(embedder, texts)).abs().max() < 1e-5
    assert embedder.encode_image(torch.zeros(1, 3, 256, 256)).shape == (1, 512)


@pytest.mark.slow
def test_named_model_loads_a_local_checkpoint_offline(tmp_path):
    source = load_clip("ViT-B-32", pretrained=None, seed=5)
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, tmp_path / "vitb32.safetensors")
    loaded = load_clip("ViT-B-32", pretrained=str(tmp_path / "vitb32.safetensors"))
    assert loaded.fingerprint() == source.fingerprint()
    assert loaded.describe()["pretrained"].endswith("vitb32.safetensors")
