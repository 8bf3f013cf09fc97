"""ArcFace IR-SE (Deng et al. 2019) in pure PyTorch, laid out like the `model_ir_se50.pth` StyleCLIP and e4e load.

Module names and Sequential indices mirror the InsightFace_Pytorch port those projects use, so that
`state_dict()` keys are the file's keys: `input_layer.{0,1,2}`, `body.{i}.shortcut_layer.{0,1}`,
`body.{i}.res_layer.{0..5}` (5 is the squeeze-excitation `fc1` / `fc2`), `output_layer.{0,3,4}`.
The e4e encoder (models/encoder.py) reuses `IRSEBody` under its `encoder.` prefix.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import CheckpointError

IR_SE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}  # bottleneck units per stage
STAGE_DEPTHS = (64, 128, 256, 512)


class SqueezeExcite(nn.Module):
    """Channel gate: x * sigmoid(fc2(relu(fc1(mean over H, W)))), 1x1 convs without bias, reduction 16."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x):
        gate = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))  # [B, C, 1, 1]
        return x * torch.sigmoid(gate)


class BottleneckIRSE(nn.Module):
    """Improved residual unit with SE: BN, 3x3 conv, PReLU, 3x3 conv (stride), BN, SE; plus a (projected) shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        self.stride = stride
        if in_channel != depth:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        else:
            self.shortcut_layer = None  # the reference's MaxPool2d(1, stride): plain subsampling
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SqueezeExcite(depth),
        )

    def forward(self, x):
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.shortcut_layer is None else self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


def unit_plan(units_per_stage) -> list[tuple[int, int, int]]:
    """(in_channel, depth, stride) of every bottleneck: each stage opens with a stride-2 unit."""
    plan, in_ch = [], STAGE_DEPTHS[0]
    for depth, n in zip(STAGE_DEPTHS, units_per_stage):
        plan += [(in_ch, depth, 2)] + [(depth, depth, 1)] * (n - 1)
        in_ch = depth
    return plan


class IRSEBody(nn.Module):
    """Stem (3x3 conv, BN, PReLU) and the bottleneck stages; `features` also returns each stage's last output."""

    def __init__(self, num_layers: int = 50):
        super().__init__()
        if num_layers not in IR_SE_UNITS:
            raise CheckpointError(f"IR-SE depth must be one of {sorted(IR_SE_UNITS)}, got {num_layers}.")
        self.num_layers = num_layers
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.body = nn.Sequential(*[BottleneckIRSE(*u) for u in unit_plan(IR_SE_UNITS[num_layers])])
        ends = torch.tensor(IR_SE_UNITS[num_layers]).cumsum(0) - 1
        self.stage_ends = [int(e) for e in ends]  # IR-50: units 2, 6, 20, 23

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, 3, H, W] -> the four stage outputs [B, 64, H/2, W/2] ... [B, 512, H/16, W/16]."""
        x = self.input_layer(x)
        out = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.stage_ends:
                out.append(x)
        return out


class IRSEBackbone(IRSEBody):
    """ArcFace IR-SE on 112 px faces -> [B, 512] unit embedding (BN, dropout, flatten, linear, BN1d, L2 norm)."""

    def __init__(self, num_layers: int = 50, affine: bool = True, drop_ratio: float = 0.6):
        super().__init__(num_layers)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.input_layer(x))  # [B, 512, 7, 7] at 112 px
        return F.normalize(self.output_layer(x), dim=-1)  # [B, 512]


def irse_depth(state: dict, prefix: str = "") -> int:
    """IR-SE depth (50, 100, 152) from the number of `body.{i}` units in a state dict."""
    units = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"body\.(\d+)\.", k))}
    for depth, stages in IR_SE_UNITS.items():
        if len(units) == sum(stages):
            return depth
    raise CheckpointError(
        f"found {len(units)} IR-SE bottleneck units (body.*); IR-SE 50 / 100 / 152 have "
        f"{', '.join(str(sum(s)) for s in IR_SE_UNITS.values())}."
    )


def load_state_strict(module: nn.Module, state: dict, path, what: str) -> None:
    """load_state_dict with every key and shape checked first, so a mismatch is one line naming the file."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise CheckpointError(f"{path} does not match the {what} layout ({detail}).")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(expected[k].shape):
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise CheckpointError(f"{path} has '{k}' of shape {shape}; the {what} needs {tuple(expected[k].shape)}.")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path} has non-finite values in '{k}'; the file is corrupt.")
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
