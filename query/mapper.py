"""StyleCLIP's latent mapper (SPEC §7): w_hat = w + 0.1 M(w), M one small MLP per W+ group (coarse/medium/fine).

`Mapper(ws)` edits W+ codes for the one prompt it was trained on; `mapper.save(path)` writes our file,
`load_mapper(path)` reads it back and also reads the checkpoints StyleCLIP's `mapper/scripts/train.py`
writes (`{"state_dict": {"mapper.course_mapping.mapping.1.weight": ..., "decoder.*": ...}, "opts": {...}}`),
so mappers trained with the reference code carry over.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

from models.errors import CheckpointError
from models.files import atomic_path
from models.stylegan2 import EqualLinear
from query.config import LEVELS

FORMAT = "styleatlas-mapper"
FORMAT_VERSION = 1
REFERENCE_NUM_WS = 18  # FFHQ 1024: coarse [0:4], medium [4:8], fine [8:18]
REFERENCE_BOUNDS = (4, 8)
STYLECLIP_NAMES = dict(coarse="course_mapping", medium="medium_mapping", fine="fine_mapping")  # their spelling
NORMS = ("ws", "channels")


def level_bounds(num_ws: int) -> tuple[int, int]:
    """Where medium and fine start: StyleCLIP's 4 and 8 of 18 ws, scaled to num_ws (rounded, each group >= 1 ws).

    18 ws (1024 px) -> (4, 8); 16 (512 px) -> (4, 7); 14 (256 px) -> (3, 6); 8 (the 32 px demo) -> (2, 4).
    """
    num_ws = int(num_ws)
    if num_ws < 3:
        return (num_ws, num_ws)  # one group: everything is "coarse"
    a = min(max(round(REFERENCE_BOUNDS[0] * num_ws / REFERENCE_NUM_WS), 1), num_ws - 2)
    b = min(max(round(REFERENCE_BOUNDS[1] * num_ws / REFERENCE_NUM_WS), a + 1), num_ws - 1)
    return (a, b)


@dataclasses.dataclass(frozen=True)
class MapperConfig:
    """What a mapper is: its W+ layout, which levels it moves, and how its input is normalised.

    norm: "ws" is StyleCLIP's code exactly (its PixelNorm averages over dim 1, which for a [B, n, w_dim]
    group is the n ws of the group, not the channels); "channels" normalises each w over its w_dim values
    as StyleGAN's mapping network does. Mappers read from StyleCLIP checkpoints always use "ws".
    """

    prompt: str
    num_ws: int
    w_dim: int
    bounds: tuple[int, int]  # coarse = [0:bounds[0]], medium = [bounds[0]:bounds[1]], fine = [bounds[1]:]
    levels: tuple[str, ...] = LEVELS  # the levels with a mapper; the others are left unchanged
    num_layers: int = 4
    lr_mul: float = 0.01
    step: float = 0.1  # w_hat = w + step * M(w)
    norm: str = "ws"

    def __post_init__(self):
        if self.norm not in NORMS:
            raise CheckpointError(f"mapper norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        bad = [l for l in self.levels if l not in LEVELS]
        if bad or not self.levels:
            raise CheckpointError(
                f"mapper levels must be a non-empty subset of {', '.join(LEVELS)}, got {list(self.levels)}."
            )

    def slices(self) -> dict[str, slice]:
        a, b = self.bounds
        return dict(coarse=slice(0, a), medium=slice(a, b), fine=slice(b, self.num_ws))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(bounds=list(self.bounds), levels=list(self.levels))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MapperConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["bounds"] = tuple(int(v) for v in d["bounds"])
        d["levels"] = tuple(d.get("levels", LEVELS))
        return cls(**d)


class LevelMapper(nn.Module):
    """PixelNorm + num_layers x (EqualLinear w_dim -> w_dim, lr_mul 0.01, leaky ReLU): one level's M."""

    def __init__(self, w_dim: int, num_layers: int = 4, lr_mul: float = 0.01, norm: str = "ws"):
        super().__init__()
        self.norm = norm
        self.layers = nn.ModuleList(
            [EqualLinear(w_dim, w_dim, lr_mul=lr_mul, activation=True) for _ in range(num_layers)]
        )

    def reset_parameters(self, generator: torch.Generator) -> None:
        """StyleCLIP's init: weight ~ N(0, 1) / lr_mul (unit gain once scaled), bias 0."""
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / layer.lr_mul)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, n, w_dim] (the group's ws) -> M(x) [B, n, w_dim]."""
        dim = 1 if self.norm == "ws" else 2
        x = x * torch.rsqrt(x.square().mean(dim, keepdim=True) + 1e-8)  # PixelNorm
        b, n, c = x.shape
        x = x.reshape(b * n, c)
        for layer in self.layers:
            x = layer(x)
        return x.reshape(b, n, c)


class Mapper(nn.Module):
    """A trained text-driven edit: mapper(ws [B, num_ws, w_dim] or [B, w_dim]) -> w_hat [B, num_ws, w_dim]."""

    def __init__(self, config: MapperConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.levels = nn.ModuleDict(
            {l: LevelMapper(config.w_dim, config.num_layers, config.lr_mul, config.norm) for l in config.levels}
        )
        g = torch.Generator().manual_seed(int(seed))
        for l in config.levels:
            self.levels[l].reset_parameters(g)
        self.info: dict = {}  # how it was trained (steps, losses, fingerprints), saved with it

    @property
    def prompt(self) -> str:
        return self.config.prompt

    def delta(self, ws: torch.Tensor) -> torch.Tensor:
        """M(w) [B, num_ws, w_dim]; zero on levels without a mapper (as StyleCLIP's no_*_mapper)."""
        parts = []
        for level, sl in self.config.slices().items():
            x = ws[:, sl]
            parts.append(self.levels[level](x) if level in self.levels and x.shape[1] else torch.zeros_like(x))
        return torch.cat(parts, 1)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        ws = self._w_plus(ws)
        return ws + self.config.step * self.delta(ws)

    def _w_plus(self, ws) -> torch.Tensor:
        from models.latents import check_latent_shape

        ws = check_latent_shape(ws, self.config.w_dim, self.config.num_ws)
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, self.config.num_ws, -1)
        p = next(self.parameters())
        return ws.to(p.device, p.dtype)

    # ------------------------------------------------------------------ files
    def checkpoint(self) -> dict:
        """Our file's content: format, config, weights (keys `{level}.layers.{i}.{weight,bias}`), training info."""
        return dict(
            format=FORMAT,
            version=FORMAT_VERSION,
            config=self.config.to_dict(),
            state_dict={k: v.detach().cpu() for k, v in self.levels.state_dict().items()},
            info=dict(self.info),
        )

    def save(self, path) -> Path:
        """Write the mapper to `path` (.pt, atomically; read it back with query.load_mapper)."""
        path = Path(path)
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(self.checkpoint(), tmp)
        return path

    def styleclip_checkpoint(self) -> dict:
        """The same weights as StyleCLIP's coach saves them (mapper keys only; their `decoder.*` is not ours)."""
        sd = {}
        for level, module in self.levels.items():
            for i, layer in enumerate(module.layers):
                prefix = f"mapper.{STYLECLIP_NAMES[level]}.mapping.{i + 1}"
                sd[f"{prefix}.weight"] = layer.weight.detach().cpu().clone()
                sd[f"{prefix}.bias"] = layer.bias.detach().cpu().clone()
        opts = dict(
            description=self.prompt,
            mapper_type="LevelsMapper",
            work_in_stylespace=False,
            stylegan_size=2 ** ((self.config.num_ws + 2) // 2),
            **{f"no_{l}_mapper": l not in self.levels for l in LEVELS},
        )
        return dict(state_dict=sd, opts=opts)


def load_mapper(path, device="cpu") -> Mapper:
    """A Mapper from our .pt file or from a StyleCLIP mapper checkpoint (read with weights_only=True)."""
    from models.files import read_checkpoint, require_file

    path = Path(path).expanduser()
    require_file(path, "mapper", ".pt file")
    ckpt = read_checkpoint(path)
    return mapper_from_checkpoint(ckpt, str(path)).to(device).eval()


def mapper_from_checkpoint(ckpt, name: str = "checkpoint") -> Mapper:
    """Build a Mapper from an in-memory checkpoint dict (ours or StyleCLIP's); CheckpointError otherwise."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{name} holds a {type(ckpt).__name__}, not a mapper checkpoint.")
    if ckpt.get("format") == FORMAT:
        if int(ckpt.get("version", 0)) > FORMAT_VERSION:
            raise CheckpointError(
                f"{name} is a mapper file of version {ckpt['version']}; this StyleAtlas reads "
                f"version {FORMAT_VERSION}. Update StyleAtlas."
            )
        config = MapperConfig.from_dict(ckpt["config"])
        mapper = Mapper(config)
        _load_strict(mapper.levels, ckpt["state_dict"], name)
        mapper.info = dict(ckpt.get("info") or {})
        return mapper
    if isinstance(ckpt.get("state_dict"), dict) and any(str(k).startswith("mapper.") for k in ckpt["state_dict"]):
        return _from_styleclip(ckpt, name)
    if "g_ema" in ckpt or "latent_avg" in ckpt:
        raise CheckpointError(f"{name} is a StyleGAN2 generator, not a mapper; pass it as --generator.")
    keys = ", ".join(map(str, list(ckpt)[:3]))
    raise CheckpointError(
        f"{name} is not a mapper checkpoint (neither a StyleAtlas mapper nor StyleCLIP's "
        f"{{'state_dict': mapper.*, 'opts'}}; keys start {keys})."
    )


def _from_styleclip(ckpt: dict, name: str) -> Mapper:
    """StyleCLIP LevelsMapper: groups [:4], [4:8], [8:] as their code slices them, PixelNorm over dim 1."""
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), dict) else {}
    if opts.get("work_in_stylespace"):
        raise CheckpointError(
            f"{name} is a StyleCLIP StyleSpace mapper (work_in_stylespace); only W+ mappers "
            "(LevelsMapper) are supported."
        )
    if opts.get("mapper_type", "LevelsMapper") != "LevelsMapper":
        raise CheckpointError(
            f"{name} is a StyleCLIP {opts.get('mapper_type')}; only LevelsMapper checkpoints "
            "(their default) are supported."
        )
    sd = {k[len("mapper.") :]: v for k, v in ckpt["state_dict"].items() if str(k).startswith("mapper.")}
    levels = tuple(l for l in LEVELS if any(k.startswith(STYLECLIP_NAMES[l] + ".") for k in sd))
    if not levels:
        raise CheckpointError(f"{name} has mapper weights but no course_mapping / medium_mapping / fine_mapping.")
    first = sd.get(f"{STYLECLIP_NAMES[levels[0]]}.mapping.1.weight")
    if not isinstance(first, torch.Tensor) or first.ndim != 2:
        raise CheckpointError(f"{name}: {STYLECLIP_NAMES[levels[0]]}.mapping.1.weight is missing or not a matrix.")
    w_dim = int(first.shape[1])
    num_layers = len({k.split(".")[2] for k in sd if k.startswith(STYLECLIP_NAMES[levels[0]] + ".mapping.")})
    size = int(opts.get("stylegan_size", 1024) or 1024)
    num_ws = 2 * int(round(math.log2(size))) - 2
    config = MapperConfig(
        prompt=str(opts.get("description", "")),
        num_ws=num_ws,
        w_dim=w_dim,
        bounds=REFERENCE_BOUNDS,
        levels=levels,
        num_layers=num_layers,
        norm="ws",
    )
    mapper = Mapper(config)
    ours = {}
    for key, value in sd.items():
        parts = key.split(".")  # course_mapping . mapping . i . weight
        if len(parts) != 4 or parts[1] != "mapping" or not parts[2].isdigit():
            raise CheckpointError(f"{name}: unexpected mapper key mapper.{key}.")
        level = next((l for l, n in STYLECLIP_NAMES.items() if n == parts[0]), None)
        if level is None:
            raise CheckpointError(f"{name}: unexpected mapper key mapper.{key}.")
        ours[f"{level}.layers.{int(parts[2]) - 1}.{parts[3]}"] = value  # their index 0 is the PixelNorm
    _load_strict(mapper.levels, ours, name)
    mapper.info = dict(
        source="styleclip", opts={k: v for k, v in opts.items() if isinstance(v, (str, int, float, bool, type(None)))}
    )
    return mapper


def _load_strict(module: nn.Module, state: dict, name: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(f"{name} does not fit the mapper layout (missing {missing[:2]}, unexpected {extra[:2]}).")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(own[k].shape):
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise CheckpointError(f"{name}: {k} has shape {shape}, the mapper needs {tuple(own[k].shape)}.")
    module.load_state_dict({k: v.float() for k, v in state.items()})
