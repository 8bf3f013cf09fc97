"""StyleGAN2 generator in pure PyTorch, laid out like rosinality's stylegan2-pytorch, with StyleSpace access.

The module and parameter names mirror rosinality's `model.py` so that `state_dict()` keys are the keys of the
checkpoints StyleCLIP, e4e, HairCLIP and DeltaEdit ship (`stylegan2-ffhq-config-f.pt`). No custom CUDA ops:
upfirdn2d and the fused leaky ReLU are written with plain convolutions (models/ops.py), so it runs anywhere torch runs.
Loading and saving the rosinality checkpoint format are at the end (`load_generator`, `save_generator`).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import (
    DEMO_GENERATOR,
    generator_state,
    infer_architecture,
    read_conv_clamp,
    resolve_generator_path,
)
from models.errors import AtlasError, CheckpointError
from models.files import atomic_path, hash_tensors, read_checkpoint
from models.latents import check_latent_shape, truncate
from models.nvidia import is_network_pickle, read_nvidia_checkpoint
from models.ops import fused_leaky_relu, make_kernel, upfirdn2d
from models.seeds import seed_ws

NOISE_MODES = ("const", "random", "none")


def default_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """Rosinality's channel width per resolution (config-f is channel_multiplier=2)."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate (weights stored / lr_mul, scaled at run time)."""

    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.bias_init, self.lr_mul, self.activation = bias_init, lr_mul, activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul

    def forward(self, x):
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class Blur(nn.Module):
    def __init__(self, kernel, pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        kernel = make_kernel(kernel)
        if upsample_factor > 1:
            kernel = kernel * (upsample_factor**2)
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel, factor: int = 2):
        super().__init__()
        self.factor = factor
        kernel = make_kernel(kernel) * (factor**2)
        self.register_buffer("kernel", kernel)
        p = kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution; `modulation` is the affine layer A whose output is a StyleSpace layer."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel=(1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.zeros(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """x [B, in, H, W], s [B, in] (the style, already through `modulation`)."""
        weight = self.scale * self.weight.squeeze(0).to(x.dtype)  # [out, in, k, k]
        s = s.to(x.dtype)
        x = x * s[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2)
            out = self.blur(out)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # demodulation coefficient of the per-sample weight w * s, without building it: [B, out]
            dcoef = torch.rsqrt((s.float().square() @ weight.float().square().sum((2, 3)).t()) + 1e-8)
            out = out * dcoef.to(out.dtype)[:, :, None, None]
        return out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        if noise is None:
            return x
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.zeros(1, channel, size, size))

    def forward(self, batch: int):
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channel,
        out_channel,
        kernel_size,
        style_dim,
        upsample=False,
        blur_kernel=(1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)
        self.conv_clamp = conv_clamp

    def forward(self, x, s, noise=None):
        out = self.activate(self.noise(self.conv(x, s), noise))
        # StyleGAN2-ADA's conv_clamp: clip after the activation and its sqrt(2) gain
        return out if self.conv_clamp is None else out.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=(1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x, s, skip=None):
        out = self.conv(x, s) + self.bias.to(x.dtype)
        if self.conv_clamp is not None:  # StyleGAN2-ADA clips this layer's output before the skip sum
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator exposing Z -> W -> W+ -> S -> image (the CONTRACT.md generator protocol)."""

    def __init__(
        self,
        resolution: int = 1024,
        style_dim: int = 512,
        n_mlp: int = 8,
        channels: dict[int, int] | None = None,
        channel_multiplier: int = 2,
        lr_mlp: float = 0.01,
        blur_kernel=(1, 3, 3, 1),
        seed: int = 0,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        log_size = int(math.log2(resolution))
        if resolution < 4 or 2**log_size != resolution:
            raise AtlasError(f"StyleGAN2 resolution must be a power of two >= 4, got {resolution}.")
        ch = dict(default_channels(channel_multiplier))
        ch.update(channels or {})
        self.channels = {2**i: int(ch[2**i]) for i in range(2, log_size + 1)}
        self.resolution, self.log_size = resolution, log_size
        self.z_dim = self.w_dim = style_dim
        self.n_mlp, self.lr_mlp = n_mlp, lr_mlp
        self.conv_clamp = None if conv_clamp is None else float(conv_clamp)  # NVIDIA's +-256 (None: rosinality)
        clamp = dict(conv_clamp=self.conv_clamp)
        self.num_ws = log_size * 2 - 2
        self.num_layers = (log_size - 2) * 2 + 1  # modulated 3x3 convs, one noise input each

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        )
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel, **clamp)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False, **clamp)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for j in range(self.num_layers):
            size = 2 ** ((j + 5) // 2)
            self.noises.register_buffer(f"noise_{j}", torch.zeros(1, 1, size, size))
        in_ch = self.channels[4]
        for i in range(3, log_size + 1):
            out_ch = self.channels[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel, **clamp))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel, **clamp))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel, **clamp))
            in_ch = out_ch
        # truncation centre; not part of the rosinality state dict (it is stored as "latent_avg")
        self.register_buffer("mean_w", torch.zeros(style_dim), persistent=False)

        # StyleSpace layers in order: (module, kind, resolution, w index)
        self._style_layers = [(self.conv1.conv, "conv", 4, 0), (self.to_rgb1.conv, "torgb", 4, 1)]
        for b, i in enumerate(range(3, log_size + 1), start=1):
            r = 2**i
            self._style_layers += [
                (self.convs[2 * b - 2].conv, "conv", r, 2 * b - 1),
                (self.convs[2 * b - 1].conv, "conv", r, 2 * b),
                (self.to_rgbs[b - 1].conv, "torgb", r, 2 * b + 1),
            ]
        self.reset_parameters(seed)

    # ----------------------------------------------------------------- protocol
    @property
    def style_dims(self) -> list[int]:
        return [m.in_channel for m, *_ in self._style_layers]

    @property
    def rgb_layers(self) -> list[int]:
        return [i for i, (_, kind, _, _) in enumerate(self._style_layers) if kind == "torgb"]

    @property
    def style_layers(self) -> list[dict]:
        """One record per StyleSpace layer: index, kind ("conv"|"torgb"), resolution, width, w_index."""
        return [
            dict(index=i, kind=kind, resolution=r, width=m.in_channel, w_index=wi)
            for i, (m, kind, r, wi) in enumerate(self._style_layers)
        ]

    def style_affines(self) -> list[nn.Module]:
        """The affine w -> s of every style layer, in StyleSpace order (EqualLinear: weight * scale, bias * lr_mul)."""
        return [m.modulation for m, *_ in self._style_layers]

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, z_dim] -> w [B, w_dim]."""
        return self.style(z)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """w' = mean_w + psi (w - mean_w); works for [B, w_dim] and [B, num_ws, w_dim] (models/latents.py)."""
        return truncate(w, self.mean_w, psi)

    def broadcast(self, ws: torch.Tensor) -> torch.Tensor:
        """[B, w_dim] or [B, num_ws, w_dim] -> [B, num_ws, w_dim]; anything else is a clear error."""
        ws = check_latent_shape(ws, self.w_dim, self.num_ws)
        return ws.unsqueeze(1).expand(-1, self.num_ws, -1) if ws.ndim == 2 else ws

    def styles(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """W or W+ -> StyleSpace: one [B, style_dims[l]] tensor per layer (the affine outputs)."""
        ws = self.broadcast(ws)
        return [m.modulation(ws[:, wi]) for m, _, _, wi in self._style_layers]

    def synthesize(
        self,
        styles: list[torch.Tensor],
        noise_mode: str = "const",
        generator: torch.Generator | None = None,
        noise: list | None = None,
    ) -> torch.Tensor:
        """StyleSpace -> images [B, 3, R, R] in about [-1, 1]. `generator` seeds noise_mode="random".

        `noise` (one [1 or B, 1, r, r] map per 3x3 conv, as the projector optimises them) overrides noise_mode.
        """
        self._check_styles(styles)
        if noise is None:
            noise = self._noise(noise_mode, styles[0].shape[0], styles[0].device, generator)
        s = iter(styles)
        x = self.input(styles[0].shape[0]).to(styles[0].dtype)
        x = self.conv1(x, next(s), noise[0])
        skip = self.to_rgb1(x, next(s))
        for b in range(len(self.to_rgbs)):
            x = self.convs[2 * b](x, next(s), noise[2 * b + 1])
            x = self.convs[2 * b + 1](x, next(s), noise[2 * b + 2])
            skip = self.to_rgbs[b](x, next(s), skip)
        return skip

    def forward(self, z: torch.Tensor, psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
        """z [B, z_dim] -> images, through mapping, truncation and StyleSpace."""
        return self.synthesize(self.styles(self.truncate(self.mapping(z), psi)), noise_mode=noise_mode)

    # ----------------------------------------------------------------- helpers
    def sample_ws(self, n: int, seed: int = 0, psi: float = 1.0) -> torch.Tensor:
        """w [n, w_dim] of seeds seed .. seed+n-1, one z per seed (models/seeds.py), truncated with psi."""
        return seed_ws(self, range(int(seed), int(seed) + int(n)), psi)

    @torch.no_grad()
    def update_mean_w(self, n: int = 10_000, seed: int = 0, batch: int = 1000) -> torch.Tensor:
        """Set mean_w to the mean of mapping(z) over n seeded z (used when a checkpoint has no latent_avg)."""
        g = torch.Generator().manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64)
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), self.z_dim, generator=g)
            total += self.mapping(z.to(self.mean_w.device)).double().sum(0).cpu()
        self.mean_w.copy_((total / n).to(self.mean_w.dtype))
        return self.mean_w

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Rosinality's initialisation, drawn from a seeded generator (no global randomness)."""
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("modulation.bias"):
                p.fill_(1.0)
            elif name.endswith("bias") or name.endswith("noise.weight"):
                p.zero_()
            elif name.startswith("style.") and name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=g) / self.lr_mlp)
            else:
                p.copy_(torch.randn(p.shape, generator=g))
        for _, buf in self.noises.named_buffers():
            buf.copy_(torch.randn(buf.shape, generator=g))

    def fingerprint(self) -> str:
        """sha256 of every weight, buffer and the truncation centre (names, shapes, dtypes, bytes)."""
        h = hashlib.sha256()
        state = dict(self.state_dict())
        state["latent_avg"] = self.mean_w
        hash_tensors(h, state, header="{key}:{dtype}:{shape}", bf16_as_float=True)  # the byte format atlases hold
        if self.conv_clamp is not None:  # only then, so unclamped generators keep their fingerprints
            h.update(f"conv_clamp:{self.conv_clamp}".encode())
        return h.hexdigest()

    def _check_styles(self, styles) -> None:
        if len(styles) != len(self._style_layers):
            raise AtlasError(f"expected {len(self._style_layers)} style layers, got {len(styles)}.")
        for i, (s, width) in enumerate(zip(styles, self.style_dims)):
            if s.ndim != 2 or s.shape[1] != width or s.shape[0] != styles[0].shape[0]:
                raise AtlasError(f"style layer {i} has shape {tuple(s.shape)}, expected [B, {width}].")

    def _noise(self, mode, batch, device, generator):
        if mode == "const":
            return [getattr(self.noises, f"noise_{j}") for j in range(self.num_layers)]
        if mode == "none":
            return [None] * self.num_layers
        if mode == "random":
            shapes = [getattr(self.noises, f"noise_{j}").shape[-1] for j in range(self.num_layers)]
            return [
                torch.randn(batch, 1, n, n, generator=generator).to(device)
                if generator is not None
                else torch.randn(batch, 1, n, n, device=device)
                for n in shapes
            ]
        raise AtlasError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {mode!r}.")


def small_generator(
    seed: int = 0,
    resolution: int = 32,
    style_dim: int = 32,
    n_mlp: int = 2,
    width: int = 32,
    noise_strength: float = 0.1,
) -> StyleGAN2Generator:
    """A seeded random tiny StyleGAN2 for tests (narrow widths, nonzero noise weights)."""
    log_size = int(math.log2(resolution))
    gen = StyleGAN2Generator(
        resolution, style_dim, n_mlp, channels={2**i: width for i in range(2, log_size + 1)}, seed=seed
    )
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith("noise.weight") or name.endswith("activate.bias"):
                p.copy_(noise_strength * torch.randn(p.shape, generator=g))
    gen.update_mean_w(n=2000, seed=seed)
    return gen.eval()


def load_generator(path, device="cpu") -> StyleGAN2Generator:
    """Load a rosinality-format StyleGAN2 checkpoint (dict with "g_ema" [+ "latent_avg"], or a bare state dict).

    "demo" loads the shipped shapes-world generator. A `.pkl` that is not a zip is an NVIDIA network pickle,
    read as the rosinality checkpoint it maps onto (models/nvidia.py). Without latent_avg, mean_w is the mean
    of mapping(z) over 10,000 seeded z.
    """
    path = resolve_generator_path(path)
    if is_network_pickle(path):
        ckpt, _ = read_nvidia_checkpoint(path)
    else:
        ckpt = read_checkpoint(path)
    gen = generator_from_checkpoint(ckpt, path)
    if path.resolve() == DEMO_GENERATOR.resolve():
        gen.source, gen.neutral = "demo", "shape"  # the shapes world's class word
    return gen.to(device).eval()


def generator_from_checkpoint(ckpt, path: Path) -> StyleGAN2Generator:
    """A StyleGAN2Generator holding a rosinality checkpoint's tensors; the architecture comes from their shapes."""
    sd, latent_avg = generator_state(ckpt, path)
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    gen = StyleGAN2Generator(**infer_architecture(sd, path), conv_clamp=read_conv_clamp(ckpt, path))
    expected = gen.state_dict()
    derived = ("noises.", ".blur.kernel", ".upsample.kernel")  # zero noise; the fixed [1,3,3,1] filters
    missing = [k for k in expected if k not in sd and not (k.startswith(derived[0]) or k.endswith(derived[1:]))]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise CheckpointError(f"{path} does not match the StyleGAN2 layout inferred from its shapes ({what}).")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{path} has inconsistent shapes: '{k}' is {tuple(v.shape)}, the architecture "
                f"inferred from the other tensors needs {tuple(expected[k].shape)}."
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path} has non-finite values in '{k}'; the file is corrupt.")
    gen.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    if latent_avg is not None:
        flat = latent_avg.reshape(-1, gen.w_dim)[0] if latent_avg.numel() % gen.w_dim == 0 else None
        if flat is None:
            raise CheckpointError(f"{path} has latent_avg of shape {tuple(latent_avg.shape)}, not [{gen.w_dim}].")
        gen.mean_w.copy_(flat.float())
    else:
        gen.update_mean_w(n=10_000, seed=0)
    gen.source = str(path)
    return gen


def save_generator(generator: StyleGAN2Generator, path) -> None:
    """Write {"g_ema": state_dict, "latent_avg": mean_w} via a temp file and rename (never half a file).

    A generator with a conv_clamp (NVIDIA StyleGAN2-ADA) also gets a "conv_clamp" number beside them.
    """
    state = {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}
    payload = {"g_ema": state, "latent_avg": generator.mean_w.detach().cpu().clone()}
    if getattr(generator, "conv_clamp", None) is not None:
        payload["conv_clamp"] = float(generator.conv_clamp)
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as exc:
        raise CheckpointError(f"could not write {path}: {exc.strerror or exc}.") from None
