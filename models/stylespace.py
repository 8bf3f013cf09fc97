"""StyleSpace layout (SPEC §1): where each style layer's channels sit in a flat vector, and back to layers.

A flat vector holds every channel of every style layer in StyleSpace order ([sum of widths]: the style
statistics); an atlas row vector holds one value per atlas channel ([C], the (layer, channel) pairs of
`channels`: relevance rows, Δs). numpy only, no torch: queries stay fast.
"""

from __future__ import annotations

import numpy as np


def _widths(layers) -> list[int]:
    """Layer widths from ints or from layer records with a "width" (the atlas's `layers`)."""
    return [int(l["width"]) if isinstance(l, dict) else int(l) for l in layers]


def layer_offsets(layers) -> np.ndarray:
    """[L + 1] int64: layer l's channels are flat[offsets[l] : offsets[l + 1]] (offsets[-1]: all channels)."""
    return np.cumsum([0] + _widths(layers), dtype=np.int64)


def split_layers(flat: np.ndarray, layers) -> list[np.ndarray]:
    """A flat StyleSpace vector [sum of widths] -> one view [width_l] per layer."""
    offsets = layer_offsets(layers)
    return [flat[offsets[l] : offsets[l + 1]] for l in range(len(offsets) - 1)]


def flat_index(channels: np.ndarray, layers) -> np.ndarray:
    """[C] int64: where each (layer, channel) row of `channels` [C, 2] sits in a flat StyleSpace vector."""
    channels = np.asarray(channels, np.int64).reshape(-1, 2)
    return layer_offsets(layers)[channels[:, 0]] + channels[:, 1]


def rows_by_layer(channels: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(layer, atlas rows, channels in that layer) for every layer that has atlas channels, in layer order."""
    channels = np.asarray(channels).reshape(-1, 2)
    return [
        (int(l), np.flatnonzero(channels[:, 0] == l), channels[channels[:, 0] == l, 1])
        for l in np.unique(channels[:, 0])
    ]


def to_layers(values: np.ndarray, channels: np.ndarray, layers, groups=None) -> list[np.ndarray]:
    """Atlas row values [..., C] (e.g. Δs) -> one float32 [..., width_l] array per style layer, zero elsewhere.

    Every layer gets an array (toRGB and layers not in the atlas stay zero), so the list adds to a
    generator's styles as StyleCLIP's manipulation code adds its per-layer boundaries. `groups`: a cached
    rows_by_layer(channels).
    """
    values = np.asarray(values, np.float32)
    out = [np.zeros(values.shape[:-1] + (w,), np.float32) for w in _widths(layers)]
    for layer, rows, cols in rows_by_layer(channels) if groups is None else groups:
        out[layer][..., cols] = values[..., rows]
    return out
