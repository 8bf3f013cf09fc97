"""Shared test helpers: tiny models, the small worlds several test files use, killed builds, one-line errors.

Plain functions and constants live here (`from helpers import ...`); the fixtures that build a world once per
module or session are in conftest.py. No test file imports another test file or conftest.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


# --------------------------------------------------------------------------- tiny models
def tiny_clip_config(**text_overrides) -> dict:
    """An open_clip model config small enough for tests: 32 px input, width 64, 2 layers, context 77."""
    text_cfg = {**dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2), **text_overrides}
    return dict(
        embed_dim=32, vision_cfg=dict(image_size=32, layers=2, width=64, patch_size=8, head_width=32), text_cfg=text_cfg
    )


def tiny_generator():
    """The seeded 16 px StyleGAN2 (style dim 16, width 8) that the build tests share."""
    from models.stylegan2 import small_generator

    return small_generator(seed=0, resolution=16, style_dim=16, width=8)


def tiny_models():
    """(tiny_generator(), a seed-0 tiny CLIP): what a subprocess rebuilds bit for bit from the same seeds."""
    from models.clip import load_clip

    return tiny_generator(), load_clip(tiny_clip_config(), seed=0)


# --------------------------------------------------------------------------- builds in other processes
ATLAS_ARRAYS = (
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

# argv: atlas dir, seconds of sleep per synthesize call, build_atlas keyword arguments as JSON
SLOW_BUILD = r'''
import json, sys, time
import torch
sys.path[:0] = [sys.argv[3], sys.argv[3].rsplit("/", 1)[0]]  # tests/, then this checkout before any install
from helpers import tiny_models
torch.set_num_threads(1)  # as the in-process reference (the one_thread fixture)
from pipeline import build_atlas

class Slow:
    """The tiny generator, slowed down so that a test can kill the build mid-relevance."""
    def __init__(self, gen, delay):
        self.gen, self.delay = gen, delay
    def __getattr__(self, name):
        return getattr(self.gen, name)
    def synthesize(self, styles, noise_mode="const"):
        time.sleep(self.delay)
        return self.gen.synthesize(styles, noise_mode=noise_mode)

gen, clip = tiny_models()
build_atlas(Slow(gen, float(sys.argv[2])), clip, sys.argv[1], **json.loads(sys.argv[4]))
'''


def start_slow_build(out: Path, delay: float, kwargs: dict) -> subprocess.Popen:
    """build_atlas(tiny_models(), out, **kwargs) in a subprocess, each render slowed by `delay` seconds."""
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, str(out), str(delay), str(TESTS), json.dumps(kwargs)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
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


def finish(proc) -> None:
    """Wait for a started build; it must succeed."""
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]


def torchrun() -> str:
    """The torchrun beside this Python (the venv's), else the first on PATH."""
    return shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def run_ok(cmd: list) -> subprocess.CompletedProcess:
    """Run a command from the checkout on one thread per process; it must exit 0 without a traceback."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return out


def write_model_files(folder: Path, vocabulary: str, templates: str = "a photo of a {}.\na {}.\n") -> Path:
    """tiny_models() as the files a CLI build reads: gen.pt, clip.json, vocab.txt, templates.txt."""
    from models.stylegan2 import save_generator

    save_generator(tiny_generator(), folder / "gen.pt")
    (folder / "clip.json").write_text(json.dumps(tiny_clip_config()))
    (folder / "vocab.txt").write_text(vocabulary, encoding="utf-8")
    (folder / "templates.txt").write_text(templates, encoding="utf-8")
    return folder


def build_args(models: Path, out: Path, **options) -> list:
    """build_index.py's arguments for the files write_model_files wrote, on the CPU; `options` as --flags."""
    args = ["--generator", models / "gen.pt", "--clip", models / "clip.json", "--out", out]
    args += ["--vocabulary", models / "vocab.txt", "--templates", models / "templates.txt"]
    args += ["--device", "cpu", "--neutral", "shape", "--random-weights"]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", value]
    return [str(a) for a in args]


def assert_same_atlas(a_dir, b_dir, arrays=ATLAS_ARRAYS):
    """The two atlases hold bit-equal arrays and the same vocabulary and config; returns both, read."""
    import index

    a, b = index.read_atlas(a_dir), index.read_atlas(b_dir)
    for name in arrays:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.vocab == b.vocab and a.config == b.config
    return a, b


# --------------------------------------------------------------------------- the tiny real world
VOCAB = ["red", "green", "blue", "circle", "square", "dark", "light", "shape"]
TEMPLATES = ["a photo of a {}.", "a {} thing."]
WORLD_BUILD = dict(  # build_atlas's settings for the tiny world
    num_images=2, num_samples=200, vocabulary=VOCAB, templates=TEMPLATES, neutral="shape", progress=False
)


def build_world(root: Path) -> dict:
    """(atlas dir, generator checkpoint, CLIP config json, the models) for one small build into `root`."""
    from models.clip import load_clip
    from models.stylegan2 import save_generator, small_generator
    from pipeline import build_atlas

    gen = small_generator(seed=0, resolution=16, width=16)
    save_generator(gen, root / "gen.pt")
    clip_cfg = root / "tiny_clip.json"
    clip_cfg.write_text(json.dumps(tiny_clip_config()))
    embedder = load_clip(str(clip_cfg))  # random weights: a library call may ask for them
    gen.source = str(root / "gen.pt")  # what load_generator would record
    build_atlas(gen, embedder, root / "atlas", **WORLD_BUILD)
    return dict(root=root, atlas=root / "atlas", gen=root / "gen.pt", clip=clip_cfg, generator=gen, embedder=embedder)


def cli_error(main, capsys, *args, notes: bool = False) -> str:
    """Run a CLI's main expecting exit 2 with a one-line error (after `notes` lines such as 'generator: ...')."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and (notes or len(err.splitlines()) == 1), err
    return err.splitlines()[-1]


def query_error(capsys, *args, notes: bool = False) -> str:
    """cli_error for query.py."""
    from query.cli import main

    return cli_error(main, capsys, *args, notes=notes)


def reseal(atlas) -> None:
    """Rewrite the manifest's sizes and hashes, as a careful forger would (so only the content checks remain)."""
    from index.verify import describe_files

    manifest = json.loads((atlas / "MANIFEST.json").read_text())
    manifest["files"], manifest["sha256"] = describe_files(atlas, list(manifest["files"]))
    (atlas / "MANIFEST.json").write_text(json.dumps(manifest))


# --------------------------------------------------------------------------- the planted world
RED, GREEN, BRIGHT = (0, 3), (1, 1), (1, 0)  # (layer, channel)
COLOUR_WORDS = {"red": 0, "green": 1, "blue": 2}


class PlantedGenerator:
    """A plain object implementing the generator protocol; styles are plain tensors.

    Image redness is driven by style channel RED, greenness by GREEN; every other channel changes texture (not
    mean colour) or, BRIGHT, brightness a little."""

    z_dim = w_dim = 8
    num_ws = 1
    resolution = 8
    style_dims = [6, 5, 4]
    rgb_layers = [2]

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.affine = [torch.randn(8, d, generator=g) for d in self.style_dims]
        self.mean_w = torch.zeros(8)
        yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
        self.checker = ((yy + xx) % 2 * 2 - 1).float()  # [8, 8], zero mean

    def mapping(self, z):
        return torch.tanh(z)

    def styles(self, ws):
        ws = ws[:, 0] if ws.ndim == 3 else ws
        return [ws @ a for a in self.affine]

    def synthesize(self, styles, noise_mode="const"):
        s0, s1, s2 = styles
        texture = s0[:, [0, 1, 2, 4, 5]].sum(1) + s1[:, 2:].sum(1) + s2.sum(1)  # [B]
        img = 0.1 * torch.tanh(texture)[:, None, None, None] * self.checker  # [B, 3, 8, 8] after broadcast
        img = img.expand(-1, 3, -1, -1).clone()
        img[:, 0] += 0.5 * torch.tanh(s0[:, RED[1]])[:, None, None]
        img[:, 1] += 0.5 * torch.tanh(s1[:, GREEN[1]])[:, None, None]
        img += 0.1 * torch.tanh(s1[:, BRIGHT[1]])[:, None, None, None]
        return img


class MeanColourEmbedder:
    """Image embedding: a fixed rotation of [mean r, g, b, 1]; text: colour words to the same directions."""

    dim = 8

    def __init__(self):
        q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))
        self.rotation = q

    def encode_image(self, images):
        m = images.mean((2, 3))  # [B, 3]
        x = torch.cat([m, torch.ones(len(m), 1), torch.zeros(len(m), 4)], 1)  # [B, 8]
        return F.normalize(x @ self.rotation, dim=-1)

    def encode_text(self, texts):
        rows = []
        for text in texts:
            v = torch.zeros(8)
            v[3] = 1.0
            for word in text.lower().replace(".", " ").split():
                if word in COLOUR_WORDS:
                    v[COLOUR_WORDS[word]] += 1.0
            g = torch.Generator().manual_seed(sum(map(ord, text)))
            v[4:] = 0.05 * torch.randn(4, generator=g)  # template wording moves only the unused dimensions
            rows.append(v)
        return F.normalize(torch.stack(rows) @ self.rotation, dim=-1)


def build_planted(out: Path, **options) -> Path:
    """build_atlas on the planted generator and embedder (6 images a channel, colour words); returns `out`."""
    from pipeline import build_atlas

    build_atlas(
        PlantedGenerator(),
        MeanColourEmbedder(),
        out,
        num_images=6,
        num_samples=500,
        vocabulary=["red", "green", "blue", "texture"],
        templates=["a photo of a {}.", "a {} thing."],
        neutral="shape",
        progress=False,
        **options,
    )
    return out


class PlantedColourGenerator:
    """Generator protocol: layer 0 channel 2 sets redness, layer 3 channel 1 greenness; toRGB (1, 4) tints blue."""

    z_dim = w_dim = 8
    num_ws = 4
    resolution = 8

    def __init__(self):
        from query.synthetic import stylegan2_layers

        self.layers = stylegan2_layers([4, 4, 4])  # conv 0, torgb 1, conv 2, conv 3, torgb 4
        self.style_dims = [l["width"] for l in self.layers]
        self.rgb_layers = [1, 4]
        g = torch.Generator().manual_seed(0)
        self.affine = [torch.randn(8, d, generator=g) * 0.3 for d in self.style_dims]
        self.mean_w = torch.zeros(8)

    def mapping(self, z):
        return torch.tanh(z)

    def styles(self, ws):
        ws = ws if ws.ndim == 3 else ws[:, None].expand(-1, self.num_ws, -1)
        return [ws[:, self.layers[i]["w_index"]] @ a for i, a in enumerate(self.affine)]

    def synthesize(self, styles, noise_mode="const"):
        img = torch.zeros(len(styles[0]), 3, 8, 8)
        img[:, 0] += torch.tanh(styles[0][:, 2])[:, None, None]
        img[:, 1] += torch.tanh(styles[3][:, 1])[:, None, None]
        img[:, 2] += 0.3 * torch.tanh(styles[1].sum(1) + styles[4].sum(1))[:, None, None]
        return img


def planted_data():
    """Synthetic AtlasData for PlantedColourGenerator: channel (0, 2) up is redder, (3, 1) up greener."""
    from query.synthetic import synthetic_atlas_data

    layers = PlantedColourGenerator().layers
    data = synthetic_atlas_data(layers=layers, vocab=["red", "green", "blue"], dim=8, seed=5)
    e = np.eye(8, dtype=np.float32)
    data.neutral_embedding = e[0]
    data.vocab_embeddings = np.stack([(e[0] + e[1]) / 2**0.5, (e[0] + e[2]) / 2**0.5, (e[0] + e[3]) / 2**0.5])
    data.relevance = 0.05 * data.relevance  # background: weak, unrelated
    data.relevance[:, 1:4] = 0
    rows = {tuple(c): r for r, c in enumerate(data.channels)}
    data.relevance[rows[(0, 2)]] = e[1]  # channel (0, 2) up = redder
    data.relevance[rows[(3, 1)]] = e[2]  # channel (3, 1) up = greener
    return data


# --------------------------------------------------------------------------- the shapes world (trained demo models)
DEMO = ROOT / "models" / "demo"
_missing = [name for name in ("generator.pt", "clip_config.json", "clip.safetensors") if not (DEMO / name).exists()]
# pytestmark of every shapes-world test file: slow, and skipped with the reason without the trained demo models
SHAPES_WORLD = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(_missing),
        reason=f"the shapes-world models are not trained yet ({', '.join(_missing)} missing in "
        "models/demo); they come from shapes/train_generator.py and train_clip.py",
    ),
]


def open_shapes_atlas():
    """(Atlas, its folder) for the shapes world: $STYLEATLAS_DEMO_ATLAS or ./atlas when built with the demo
    models, else a small build (8 images per channel, 5,000 samples) cached in out/test_cache/ by fingerprints."""
    from models.clip import load_clip
    from models.errors import AtlasError
    from models.stylegan2 import load_generator
    from query import Atlas

    gen, clip = load_generator("demo"), load_clip("demo")
    for candidate in (os.environ.get("STYLEATLAS_DEMO_ATLAS"), ROOT / "atlas"):
        if candidate and (Path(candidate) / "atlas.h5").exists():
            try:
                return Atlas.open(candidate, generator=gen, embedder=clip), candidate
            except AtlasError:
                continue  # another build, or models retrained since: build our own
    from index import fingerprint_embedder, fingerprint_generator
    from models.text import load_templates
    from pipeline import build_atlas

    torch.set_num_threads(2)
    name = f"shapes-{fingerprint_generator(gen)[:12]}-{fingerprint_embedder(clip, load_templates())[:12]}"
    out = ROOT / "out" / "test_cache" / name
    build_atlas(gen, clip, out, num_images=8, num_samples=5000, vocabulary="demo", progress=False)
    return Atlas.open(out, generator=gen, embedder=clip), out


def image(response) -> np.ndarray:
    """The PNG a web API response carries, as [H, W, 3] uint8."""
    import io

    from PIL import Image

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def pixels(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8, as the API sends them."""
    from query.media import to_uint8

    return to_uint8(images)
