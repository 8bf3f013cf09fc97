"""The query layer's settings: one frozen dataclass per operation, defaults from SPEC.md, written only here.

Torch-free, so the CLI reads its option defaults from these classes without loading torch
(tests/test_cold_start.py); the functions that run the operations take the same defaults from here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import AtlasError
from models.numbers import check_finite
from models.seeds import DEFAULT_PSI

LEVELS = ("coarse", "medium", "fine")  # StyleCLIP's mapper levels of W+ (query/mapper.py level_bounds)


@dataclass(frozen=True)
class OptimizeConfig:
    """Settings of one optimization run (SPEC §6 defaults); saved beside its results."""

    steps: int = 300
    lr: float = 0.1
    l2_lambda: float = 0.008
    id_lambda: float = 0.005
    preprocess: str = "pool"  # CLIP input: "pool" (SPEC §6), "clip", or "reference" (StyleCLIP's raw input)
    l2_norm: str = "generator"  # "generator": in units of this generator's W variance (losses.l2_scale); "reference"
    noise_mode: str = "const"
    seed: int = 0
    augment: int = 4  # randomly warped views averaged in the CLIP loss per step (losses.random_views); 0 = off
    # exploration noise on the latent the generator sees, in units of W's per-coordinate std, fading (quadratic)
    # to 0 over the first noise_ramp of the steps, as in StyleGAN2's projector; 0 = off (the reference)
    latent_noise: float = 1.0
    noise_ramp: float = 0.75
    # weight of the W+ spread term (losses.latent_spread: how far the edit pulls the layers' w apart from the start's
    # layer structure, e4e's idea), on the same scale as l2_lambda (x l2_scale); 0 = off (the reference)
    spread_lambda: float = 0.08

    def check(self) -> "OptimizeConfig":
        if not isinstance(self.steps, int) or self.steps < 1:
            raise AtlasError(f"steps must be a positive integer (300 in the reference), got {self.steps!r}.")
        for name in ("lr", "l2_lambda", "id_lambda", "latent_noise", "spread_lambda"):
            check_finite(getattr(self, name), name, low=0)
        if check_finite(self.noise_ramp, "noise_ramp", low=0) > 1 or (self.latent_noise > 0 and self.noise_ramp == 0):
            raise AtlasError(
                f"noise_ramp is the share of the steps the latent noise fades over, in (0, 1]; got {self.noise_ramp!r}."
            )
        if not isinstance(self.augment, int) or self.augment < 0:
            raise AtlasError(f"augment must be an integer >= 0 (CLIP views per step; 0 = off), got {self.augment!r}.")
        if self.lr <= 0:
            raise AtlasError(f"lr must be > 0 (0.1 in the reference), got {self.lr}.")
        return self


@dataclass(frozen=True)
class InvertConfig:
    """Settings of one projection run; saved with its results."""

    steps: int = 500
    lr: float = 0.1
    min_scale: int = 8  # the pixel loss is taken at every halving of the size down to this
    clip_lambda: float = 0.1  # CLIP image-embedding term, when an embedder is given
    id_lambda: float = 0.1  # identity term, when an identity is given (its lambda_scale is for edits, not used)
    noise_ramp: float = 0.75  # latent exploration noise fades to zero over this share of the steps
    noise_strength: float = 0.05  # its initial size, in W standard deviations (total norm)
    optimize_noise: bool = False
    noise_regularize: float = 1e5
    seed: int = 0

    def check(self) -> "InvertConfig":
        if not isinstance(self.steps, int) or self.steps < 0:
            raise AtlasError(f"steps must be an integer >= 0, got {self.steps!r}.")
        if not self.lr > 0:
            raise AtlasError(f"lr must be > 0, got {self.lr!r}.")
        return self


@dataclass(frozen=True)
class MapperTrainConfig:
    """Defaults of one mapper training run (SPEC §7; query/mapper_train.py train_mapper)."""

    steps: int = 400
    batch_size: int = 16
    lr: float = 0.5  # StyleCLIP's (with Ranger); Adam at 0.01 barely moved the demo mapper in 100 steps
    l2_lambda: float = 0.8
    id_lambda: float = 0.1
    psi: float = DEFAULT_PSI  # truncation of the sampled training latents
    seed: int = 0  # seed of the training set and of the batch order (not an image seed)
    levels: tuple = LEVELS


@dataclass(frozen=True)
class StripConfig:
    """An edit strip (query.py edit; query/edit.py edit_strip): one row per latent, the original then each alpha."""

    psi: float = DEFAULT_PSI
    noise_mode: str = "const"
    cell: int = 128


@dataclass(frozen=True)
class GridConfig:
    """A channel grid (query.py channel -o; query/edit.py channel_grid): one row per seed, alphas as columns."""

    alpha: float = 10.0  # columns from -alpha to +alpha standard deviations
    steps: int = 5
    seeds: tuple = (0, 1, 2, 3)
    psi: float = DEFAULT_PSI
    cell: int = 96
