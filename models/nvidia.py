"""NVIDIA StyleGAN2 network pickles (stylegan2-ada-pytorch, stylegan3 --cfg=stylegan2) -> rosinality checkpoints.

A `network-snapshot-*.pkl` holds {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}; we read it with
models/nvidia_pickle.py (no code in the file runs) and map G_ema onto a rosinality checkpoint dict, which
`models.stylegan2.load_generator` turns into our generator as it does any rosinality file. The
arithmetic is the same layer by layer: mapping = 2nd-moment normalisation + lrelu FC layers (weight gain
lr/sqrt(in), bias gain lr), affine A = style modulation (FC, gain 1/sqrt(w_dim), bias learned from init 1),
demodulated 3x3 convs with the upsampling conv as transposed conv + [1,3,3,1] filter, noise_const *
noise_strength added before bias + lrelu * sqrt(2), toRGB = 1x1 modulated conv whose weight gain 1/sqrt(C) we
fold into the weight instead of the style, skips upsampled with the [1,3,3,1] filter, and conv_clamp clipping
each layer's output (after the gain) when the snapshot was trained with it (ADA: 256). fp16 blocks
(num_fp16_res) are only a storage/compute precision on NVIDIA's side: parameters are fp32 in the pickle and we
run fp32. Anything that does not map exactly (conditional c_dim > 0, StyleGAN3, 'orig'/'resnet' synthesis,
other filters or activations, grayscale) is refused in one line.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from models.errors import CheckpointError
from models.nvidia_pickle import PersistentModule, TensorFlowNetwork, read_network_pickle
from models.ops import make_kernel

ROSINALITY_LR_MLP = 0.01  # what a rosinality checkpoint's mapping assumes; other lr multipliers are folded in


@dataclass(frozen=True)
class SnapshotInfo:
    """What a network pickle held, for the convert command's report."""

    resolution: int
    w_dim: int
    mapping_layers: int
    mapping_lr: float
    channels: dict
    conv_clamp: float | None
    fp16_resolutions: list
    has_w_avg: bool
    noise_layers: int
    keys: list

    def to_dict(self) -> dict:
        return asdict(self)


def is_network_pickle(path) -> bool:
    """A `.pkl` file that is not a zip archive (torch.save writes zips): an NVIDIA network pickle."""
    path = Path(path)
    return path.suffix.lower() == ".pkl" and path.is_file() and not zipfile.is_zipfile(path)


def read_nvidia_checkpoint(path) -> tuple[dict, SnapshotInfo]:
    """(the rosinality checkpoint G_ema maps onto, what the snapshot held); refusals are one-line CheckpointErrors."""
    data = read_network_pickle(path)
    G, keys = _pick_generator(data, path)
    try:
        ckpt, info = checkpoint_from_nvidia(G, path)
    except (KeyError, TypeError, AttributeError, ValueError, RuntimeError, IndexError) as exc:  # odd structure
        detail = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise CheckpointError(
            f"{path} holds a G_ema that does not look like a StyleGAN2 generator ({type(exc).__name__}: {detail})."
        ) from None
    return ckpt, replace(info, keys=keys)


def _pick_generator(data, path) -> tuple[PersistentModule, list]:
    """G_ema out of a snapshot dict (or a bare pickled Generator), or say what the file holds instead."""
    if isinstance(data, tuple) and any(isinstance(x, TensorFlowNetwork) for x in data):
        raise CheckpointError(
            f"{path} is a TensorFlow StyleGAN/StyleGAN2 pickle (dnnlib.tflib); StyleAtlas reads "
            "the PyTorch pickles of stylegan2-ada-pytorch and stylegan3."
        )
    if isinstance(data, PersistentModule):
        return data, [data.class_name]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not an NVIDIA network snapshot dict.")
    keys = [str(k) for k in data]
    G = data.get("G_ema", data.get("G"))
    if not isinstance(G, PersistentModule):
        raise CheckpointError(
            f"{path} has no generator (keys: {', '.join(keys[:6])}); expected 'G_ema' as in network-snapshot-*.pkl."
        )
    return G, keys


def _require(cond: bool, path, what: str) -> None:
    if not cond:
        raise CheckpointError(f"{path}: {what}")


def _close(a, b) -> bool:
    return a is not None and abs(float(a) - float(b)) <= 1e-6 * max(abs(float(b)), 1e-12)


def _refuse_other_architectures(G: PersistentModule, path) -> None:
    """StyleGAN3, conditional and non-skip generators do not map onto our StyleGAN2: say which one it is."""
    names = {m.class_name for _, m in G.walk()}
    synthesis = G.modules.get("synthesis")
    if "SynthesisInput" in names or (isinstance(synthesis, PersistentModule) and synthesis.get("layer_names")):
        raise CheckpointError(
            f"{path} is a StyleGAN3 (alias-free, config T/R) generator; StyleAtlas reads StyleGAN2 "
            "pickles only (stylegan2-ada-pytorch, or stylegan3 trained with --cfg=stylegan2)."
        )
    _require(
        G.class_name == "Generator"
        and isinstance(synthesis, PersistentModule)
        and isinstance(G.modules.get("mapping"), PersistentModule),
        path,
        f"G_ema is a {G.class_name} without mapping + synthesis networks, not a StyleGAN2 Generator.",
    )
    c_dim = G.get("c_dim", 0) or 0
    _require(
        c_dim == 0 and "embed" not in G.modules["mapping"].modules,
        path,
        f"conditional generators (c_dim={c_dim}) are not supported: StyleAtlas's mapping takes z only.",
    )
    _require(
        G.get("img_channels", 3) == 3,
        path,
        f"the generator makes {G.get('img_channels')}-channel images; StyleAtlas needs RGB (3).",
    )
    for name, block in synthesis.modules.items():
        arch = block.get("architecture", "skip")
        _require(
            arch == "skip",
            path,
            f"synthesis block {name} uses the '{arch}' architecture; only 'skip' "
            "(the StyleGAN2 default) maps onto StyleAtlas's generator.",
        )


def _mapping(G: PersistentModule, w_dim: int, path) -> tuple[dict, int, float, torch.Tensor | None]:
    """rosinality `style.{i}` tensors, depth, lr multiplier and w_avg from the MappingNetwork."""
    mapping = G.modules["mapping"]
    fcs = [mapping.modules.get(f"fc{i}") for i in range(len(mapping.modules))]
    _require(
        bool(fcs) and all(isinstance(fc, PersistentModule) for fc in fcs),
        path,
        "the mapping network's layers are not fc0, fc1, ...",
    )
    lr = fcs[0].get("bias_gain")
    _require(
        isinstance(lr, (int, float)) and lr > 0,
        path,
        f"mapping layer fc0 has bias gain {lr!r}, not a positive lr multiplier.",
    )
    sd = {}
    for i, fc in enumerate(fcs):
        t = fc.tensors
        w, b = t.get("weight"), t.get("bias")
        _require(
            w is not None and b is not None and tuple(w.shape) == (w_dim, w_dim),
            path,
            f"mapping layer fc{i} is {tuple(w.shape) if w is not None else 'missing'}; StyleAtlas needs "
            f"z_dim = layer width = w_dim = {w_dim} (a bias included).",
        )
        _require(
            fc.get("activation") == "lrelu", path, f"mapping layer fc{i} uses {fc.get('activation')!r}, not lrelu."
        )
        _require(
            _close(fc.get("bias_gain"), lr) and _close(fc.get("weight_gain"), lr / math.sqrt(w_dim)),
            path,
            f"mapping layer fc{i} has weight/bias gains {fc.get('weight_gain')}/{fc.get('bias_gain')} that are "
            "not one lr multiplier.",
        )
        # same effective weights under rosinality's lr_mlp: w_eff = w * lr / sqrt(in) = w' * 0.01 / sqrt(in)
        fold = float(lr) / ROSINALITY_LR_MLP
        sd[f"style.{i + 1}.weight"] = w.float() * fold if fold != 1 else w.float()
        sd[f"style.{i + 1}.bias"] = b.float() * fold if fold != 1 else b.float()
    w_avg = mapping.tensors.get("w_avg")
    return sd, len(fcs), float(lr), w_avg


def _affine(layer: PersistentModule, prefix: str, w_dim: int, path) -> dict:
    aff = layer.modules.get("affine")
    t = aff.tensors if isinstance(aff, PersistentModule) else {}
    _require(
        "weight" in t and "bias" in t and t["weight"].shape[1] == w_dim,
        path,
        f"{prefix} has no affine (style) layer of input width {w_dim}.",
    )
    _require(
        _close(aff.get("bias_gain", 1), 1)
        and _close(aff.get("weight_gain"), 1 / math.sqrt(w_dim))
        and aff.get("activation", "linear") == "linear",
        path,
        f"{prefix}.affine is not a plain linear layer with gain 1/sqrt(w_dim).",
    )
    return {"modulation.weight": t["weight"], "modulation.bias": t["bias"]}


def _conv(layer: PersistentModule, prefix: str, w_dim: int, up: int, path) -> tuple[dict, torch.Tensor | None]:
    """A SynthesisLayer -> rosinality StyledConv tensors (+ its noise_const)."""
    t = layer.tensors
    w = t.get("weight")
    _require(w is not None and w.ndim == 4 and w.shape[2:] == (3, 3), path, f"{prefix} is not a 3x3 convolution.")
    _require(
        layer.get("up", 1) == up
        and layer.get("activation") == "lrelu"
        and layer.get("padding", 1) == 1
        and _close(layer.get("act_gain"), math.sqrt(2)),
        path,
        f"{prefix} is not a StyleGAN2 layer (up={layer.get('up')}, activation={layer.get('activation')!r}).",
    )
    _require("bias" in t, path, f"{prefix} has no bias.")
    noise = t.get("noise_const") if layer.get("use_noise", True) else None
    strength = t.get("noise_strength") if noise is not None else None
    _require(
        noise is None
        or (strength is not None and strength.numel() == 1 and noise.numel() == layer.get("resolution", 0) ** 2),
        path,
        f"{prefix} has noise_const / noise_strength of unexpected shapes.",
    )
    sd = {
        "conv.weight": w[None],
        "activate.bias": t["bias"],
        "noise.weight": strength.reshape(1) if strength is not None else torch.zeros(1),
    }
    sd.update({f"conv.{k}": v for k, v in _affine(layer, prefix, w_dim, path).items()})
    return sd, noise


def _torgb(layer: PersistentModule, prefix: str, w_dim: int, path) -> dict:
    t = layer.tensors
    w = t.get("weight")
    _require(
        w is not None and w.ndim == 4 and w.shape[0] == 3 and w.shape[2:] == (1, 1) and "bias" in t,
        path,
        f"{prefix} is not a 1x1 toRGB convolution to 3 channels.",
    )
    _require(
        _close(layer.get("weight_gain"), 1 / math.sqrt(w.shape[1])),
        path,
        f"{prefix} has weight gain {layer.get('weight_gain')}, not 1/sqrt(in_channels).",
    )
    sd = {"conv.weight": w[None], "bias": t["bias"].reshape(1, 3, 1, 1)}
    sd.update({f"conv.{k}": v for k, v in _affine(layer, prefix, w_dim, path).items()})
    return sd


def checkpoint_from_nvidia(G: PersistentModule, path="G_ema") -> tuple[dict, SnapshotInfo]:
    """Map a pickled NVIDIA StyleGAN2 Generator's parameters and buffers onto a rosinality checkpoint dict.

    {"g_ema": state dict, "latent_avg": w_avg (absent when not tracked), "conv_clamp": number (when clamped)}.
    """
    _refuse_other_architectures(G, path)
    synthesis = G.modules["synthesis"]
    w_dim = int(G.get("w_dim") or 0)
    _require(
        w_dim > 0 and (G.get("z_dim") or w_dim) == w_dim,
        path,
        f"z_dim {G.get('z_dim')} differs from w_dim {w_dim}; StyleAtlas's mapping needs them equal.",
    )
    res = int(synthesis.get("img_resolution") or 0)
    log2 = int(math.log2(res)) if res >= 4 else 0
    blocks = {r: synthesis.modules.get(f"b{r}") for r in (2**i for i in range(2, log2 + 1))}
    _require(
        res >= 4 and 2**log2 == res and all(isinstance(b, PersistentModule) for b in blocks.values()),
        path,
        f"the synthesis network of resolution {res} does not have blocks b4 ... b{res}.",
    )
    for name, buf in ((n, m.tensors.get("resample_filter")) for n, m in synthesis.walk()):
        _require(
            buf is None or (buf.shape == (4, 4) and torch.allclose(buf.float(), make_kernel([1, 3, 3, 1]))),
            path,
            f"{name or 'synthesis'} resamples with a filter other than [1,3,3,1].",
        )

    sd, n_mlp, lr, w_avg = _mapping(G, w_dim, path)
    const = blocks[4].tensors.get("const")
    _require(const is not None and const.ndim == 3 and const.shape[1:] == (4, 4), path, "b4 has no 4x4 const input.")
    sd["input.input"] = const[None]
    channels, noises, clamps, fp16 = {}, [], set(), []
    for r, block in blocks.items():
        conv1 = block.modules.get("conv1")
        conv0 = block.modules.get("conv0")
        torgb = block.modules.get("torgb")
        _require(
            isinstance(conv1, PersistentModule)
            and isinstance(torgb, PersistentModule)
            and (r == 4 or isinstance(conv0, PersistentModule)),
            path,
            f"block b{r} lacks {'conv1/torgb' if r == 4 else 'conv0/conv1/torgb'}.",
        )
        channels[r] = int(conv1.tensors["weight"].shape[0]) if "weight" in conv1.tensors else 0
        clamps.update(m.get("conv_clamp") for m in (conv0, conv1, torgb) if m is not None)
        if block.get("use_fp16"):
            fp16.append(r)
        if r == 4:
            s, n = _conv(conv1, "b4.conv1", w_dim, 1, path)
            sd.update({f"conv1.{k}": v for k, v in s.items()})
            sd.update({f"to_rgb1.{k}": v for k, v in _torgb(torgb, "b4.torgb", w_dim, path).items()})
            noises.append((n, r))
            continue
        k = int(math.log2(r)) - 3  # index of this resolution among the upsampling blocks
        for j, (name, layer, up) in enumerate((("conv0", conv0, 2), ("conv1", conv1, 1))):
            s, n = _conv(layer, f"b{r}.{name}", w_dim, up, path)
            sd.update({f"convs.{2 * k + j}.{key}": v for key, v in s.items()})
            noises.append((n, r))
        sd.update({f"to_rgbs.{k}.{key}": v for key, v in _torgb(torgb, f"b{r}.torgb", w_dim, path).items()})
    _require(
        len(clamps) == 1,
        path,
        f"layers use different conv_clamp values {sorted(map(str, clamps))}; "
        "StyleAtlas applies one clamp to every layer.",
    )
    clamp = clamps.pop()
    _require(
        clamp is None or (isinstance(clamp, (int, float)) and clamp > 0),
        path,
        f"conv_clamp {clamp!r} is not a positive number.",
    )

    for j, (n, size) in enumerate(noises):  # noise_const is [r, r] at resolution r
        sd[f"noises.noise_{j}"] = n.reshape(1, 1, size, size) if n is not None else torch.zeros(1, 1, size, size)
    ckpt = {"g_ema": sd}
    if w_avg is not None:
        _require(
            w_avg.numel() == w_dim and bool(torch.isfinite(w_avg).all()),
            path,
            f"mapping.w_avg has shape {tuple(w_avg.shape)}, not [{w_dim}].",
        )
        ckpt["latent_avg"] = w_avg.reshape(w_dim).float()
    # w_avg_beta=None: no tracked average; the loader estimates it as for any rosinality file without one
    if clamp is not None:
        ckpt["conv_clamp"] = clamp
    info = SnapshotInfo(
        resolution=res,
        w_dim=w_dim,
        mapping_layers=n_mlp,
        mapping_lr=lr,
        channels=channels,
        conv_clamp=None if clamp is None else float(clamp),
        fp16_resolutions=fp16,
        has_w_avg=w_avg is not None,
        noise_layers=sum(n is not None for n, _ in noises),
        keys=[],
    )
    return ckpt, info
