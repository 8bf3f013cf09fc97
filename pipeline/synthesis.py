"""StyleGAN2 synthesis one style layer at a time: prefix reuse and the early exit of the exact relevance path.

A change in style layer l leaves everything computed before layer l unchanged, so the state there (the
feature map x and the RGB skip image) is computed once per image and only layers l.. are rendered per
perturbed row (exact: the same operations as `synthesize`). With `exit_resolution` a row stops after the
toRGB at that resolution and the skip image there is what CLIP sees (StyleMC's shortcut for large
generators; an approximation, validated against full renders in benchmarks/relevance.py).
Only the built-in StyleGAN2 layout is staged; other protocol generators fall back to `synthesize`.
"""

from __future__ import annotations

import torch


def supports(generator) -> bool:
    """True for the built-in StyleGAN2 itself (a wrapper that overrides synthesize must keep being called)."""
    from models.stylegan2 import StyleGAN2Generator

    return isinstance(generator, StyleGAN2Generator) and type(generator).synthesize is StyleGAN2Generator.synthesize


def layer_resolutions(generator) -> list[int]:
    """Output resolution of every style layer (4, 4, 8, 8, 8, 16, ...)."""
    return [int(l["resolution"]) for l in generator.style_layers]


def step(generator, l: int, state: tuple, s: torch.Tensor, noise: list) -> tuple:
    """Apply style layer l to state (x, skip) with its style s [B, width] -> the state after layer l."""
    x, skip = state
    if l == 0:
        return generator.conv1(x, s, noise[0]), skip
    if l == 1:
        return x, generator.to_rgb1(x, s)
    b, kind = divmod(l - 2, 3)  # block b: conv_up, conv, toRGB
    if kind == 2:
        return x, generator.to_rgbs[b](x, s, skip)
    return generator.convs[2 * b + kind](x, s, noise[2 * b + kind + 1]), skip


def start_state(generator, batch: int, dtype) -> tuple:
    """The state before layer 0: the constant input, no skip image yet."""
    return generator.input(batch).to(dtype), None


def run_layers(generator, state: tuple, styles: list, first: int, last: int, noise_mode: str) -> tuple:
    """Apply layers first..last-1 (styles: the full per-layer list for this batch) to state."""
    noise = generator._noise(noise_mode, styles[0].shape[0], styles[0].device, None)
    for l in range(first, last):
        state = step(generator, l, state, styles[l], noise)
    return state


def exit_layer(generator, resolution: int | None) -> int:
    """Number of layers to run for an exit at `resolution` (through its toRGB); all when None or >= R."""
    layers = generator.style_layers
    if resolution is None:
        return len(layers)
    last = [i for i, l in enumerate(layers) if l["kind"] == "torgb" and int(l["resolution"]) <= resolution]
    return (last[-1] + 1) if last else len(layers)


class PrefixCache:
    """States before one style layer for all M images, kept while rows of that layer are rendered."""

    def __init__(self, generator, s_img: list, noise_mode: str, max_bytes: int = 1 << 30):
        self.generator, self.s_img, self.noise_mode, self.max_bytes = generator, s_img, noise_mode, max_bytes
        self.layer, self.states = None, None

    @torch.no_grad()
    def states_for(self, layer: int, ki: torch.Tensor) -> tuple:
        """(x, skip) before `layer` for images ki [B] (cached for all images when that fits in max_bytes)."""
        if self.layer != layer:
            self.layer, self.states = layer, None
            one = self._compute(layer, torch.arange(1))
            size = sum(t.numel() * t.element_size() for t in one if t is not None) * len(self.s_img[0])
            if size <= self.max_bytes:
                self.states = self._compute(layer, torch.arange(len(self.s_img[0])))
        if self.states is not None:
            return tuple(None if t is None else t[ki.to(t.device)] for t in self.states)
        unique, inverse = torch.unique(ki, return_inverse=True)
        states = self._compute(layer, unique)
        return tuple(None if t is None else t[inverse.to(t.device)] for t in states)

    def _compute(self, layer: int, ki: torch.Tensor) -> tuple:
        styles = [s[ki.to(s.device)] for s in self.s_img]
        state = start_state(self.generator, len(ki), styles[0].dtype)
        return run_layers(self.generator, state, styles, 0, layer, self.noise_mode)


def render_rows(
    generator,
    cache: PrefixCache | None,
    styles: list,
    ki: torch.Tensor,
    first: int,
    exit_resolution: int | None,
    noise_mode: str,
) -> torch.Tensor:
    """Images [B, 3, H, W] of rows whose styles differ from their image's only at layers >= first."""
    last = exit_layer(generator, exit_resolution)
    if cache is None:
        state, first = start_state(generator, styles[0].shape[0], styles[0].dtype), 0
    else:
        state = cache.states_for(first, ki)
    return run_layers(generator, state, styles, first, last, noise_mode)[1]
