"""Read shapes-world attributes back from pixels with a transparent rule (no learning, no CLIP).

Analysis by synthesis: the background is the border's median colour, the shape colour the mean of the
pixels farthest from it, the soft coverage mask the projection of every pixel onto the background->shape
colour line. Each candidate shape is re-rendered with the world's own renderer at the mask's area and
centroid; the best soft IoU names the shape. An image is `valid` when it holds one clean shape: a named
colour within COLOUR_TOLERANCE, a uniform background, enough contrast, a shape fit of at least MIN_IOU, sharp
edges (not a blurred blob) and almost every pixel explained as a blend of the two colours.
"""

from __future__ import annotations

import numpy as np
import torch

from shapes import world

COLOUR_TOLERANCE = 0.2  # max RGB distance (in [0,1] units) from the shape colour to its named colour
MIN_IOU = 0.75  # min soft IoU between the coverage mask and the best re-rendered shape
MIN_CONTRAST = 0.25  # min RGB distance between shape and background colours
MAX_BORDER_STD = 0.08  # max spread of the border pixels around the background colour
MASK_FLOOR = 0.2  # coverage below this (noise, halos) counts as background, above 1 - this as shape
MAX_RESIDUAL = 0.2  # a pixel farther than this from the two-colour model is unexplained (a second shape...)
MAX_UNEXPLAINED = 0.02  # max share of unexplained pixels
MIN_STEEPNESS = 0.45  # rendered edges measure >= 0.52, after a 1-2-1 blur >= 0.47, blurred blobs ~0.35-0.48
SIZE_THRESHOLD = (world.RADIUS_RANGE[0][1] + world.RADIUS_RANGE[1][0]) / 2  # radius in px: small below

# shape area in units of radius**2, for the geometry in world.shape_sdf
_AREA = dict(
    circle=np.pi,
    square=(2 * world.EXTENT["square"]) ** 2,
    triangle=(2 * world.EXTENT["triangle"]) ** 2 * np.sqrt(3) / 4,
    cross=2 * (2 * world.EXTENT["cross"]) * 0.7 - 0.7**2,
)


VALIDITY_TESTS = dict(  # name -> does a classify() reading pass it, per image ([n] bool)
    colour=lambda c: c["colour_distance"] < COLOUR_TOLERANCE,
    shape_fit=lambda c: c["iou"] >= MIN_IOU,
    contrast=lambda c: c["contrast"] >= MIN_CONTRAST,
    border=lambda c: c["border_std"] <= MAX_BORDER_STD,
    clutter=lambda c: c["unexplained"] <= MAX_UNEXPLAINED,
    sharpness=lambda c: c["steepness"] >= MIN_STEEPNESS,
)


def _border(x: np.ndarray) -> np.ndarray:
    """[n, 3, P] the one-pixel border ring of [n, 3, R, R] images."""
    return np.concatenate([x[:, :, 0, :], x[:, :, -1, :], x[:, :, 1:-1, 0], x[:, :, 1:-1, -1]], axis=2)


def classify(images: torch.Tensor, fits: bool = False) -> dict[str, np.ndarray]:
    """images [n, 3, 32, 32] in [-1, 1] -> attributes as np arrays (world index conventions) and `valid`.

    Keys: shape, colour, size, background (indices), x, y (in [0, 1]), cx, cy (shape centre in pixels),
    grey (the background's mean grey level), radius, rgb [n, 3], iou, shape_ious [n, 4] (every shape's fit),
    colour_distance, contrast, border_std (spread of the border ring around the background colour), unexplained
    (share of pixels off the two-colour model), steepness (edge sharpness), valid (bool); `failed_tests` names
    the tests behind an invalid image. fits: also "fits" [n, 4, R, R], every shape's coverage as re-rendered at
    the mask's area and centroid (what shape_ious compares the mask with).
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != world.RESOLUTION:
        raise ValueError(
            f"classify takes [n, 3, {world.RESOLUTION}, {world.RESOLUTION}] images, got {tuple(images.shape)}"
        )
    x = ((images.detach().float().cpu().numpy() + 1) / 2).clip(0, 1)  # [n, 3, R, R] in [0, 1]
    n = x.shape[0]
    ring = _border(x)  # [n, 3, P]
    bg = np.median(ring, axis=2)  # [n, 3]
    border_std = np.sqrt(((ring - bg[:, :, None]) ** 2).sum(1).mean(1))  # [n]
    diff = x - bg[:, :, None, None]  # [n, 3, R, R]
    dist = np.sqrt((diff**2).sum(1))  # [n, R, R]
    core = dist >= 0.75 * dist.reshape(n, -1).max(1)[:, None, None]  # [n, R, R]
    rgb = (x * core[:, None]).sum((2, 3)) / np.maximum(core.sum((1, 2)), 1)[:, None]  # [n, 3]
    axis = rgb - bg  # [n, 3]
    contrast = np.linalg.norm(axis, axis=1)  # [n]
    mask = (diff * axis[:, :, None, None]).sum(1) / np.maximum(contrast, 1e-6)[:, None, None] ** 2
    model = bg[:, :, None, None] + mask.clip(0, 1)[:, None] * axis[:, :, None, None]  # [n, 3, R, R]
    unexplained = (np.sqrt(((x - model) ** 2).sum(1)) > MAX_RESIDUAL).mean((1, 2))  # [n] share of pixels
    # soft coverage; the symmetric ramp keeps anti-aliased edge area but drops faint noise and halos
    mask = ((mask - MASK_FLOOR) / (1 - 2 * MASK_FLOOR)).clip(0, 1)  # [n, R, R]

    # sharpness: the gradient-weighted mean of the mask's steepest step per pixel; a rendered edge goes
    # from 0 to 1 within two pixels (a step >= 0.5), a blurred one in many small steps
    gx = np.pad(np.abs(np.diff(mask, axis=2)), ((0, 0), (0, 0), (0, 1)))
    gy = np.pad(np.abs(np.diff(mask, axis=1)), ((0, 0), (0, 1), (0, 0)))
    g = np.maximum(gx, gy)  # [n, R, R]
    steepness = (g**2).sum((1, 2)) / np.maximum(g.sum((1, 2)), 1e-6)  # [n]

    # colour: nearest named colour to the shape colour
    d_col = np.linalg.norm(rgb[:, None, :] - world.COLOUR_RGB[None], axis=2)  # [n, 6]
    colour = d_col.argmin(1)
    colour_distance = d_col.min(1)

    # shape: re-render every candidate at the mask's area and centroid, keep the best soft IoU
    area = mask.sum((1, 2))  # [n]
    grid = np.arange(world.RESOLUTION, dtype=np.float32) + 0.5
    safe = np.maximum(area, 1e-6)
    mx = (mask.sum(1) * grid).sum(1) / safe
    my = (mask.sum(2) * grid).sum(1) / safe
    ious, radii, cys, cands = [], [], [], []
    for k, name in enumerate(world.SHAPES):
        r = np.sqrt(np.maximum(area, 0.25) / _AREA[name]).astype(np.float32)
        cy = my - (2 * world.EXTENT["triangle"] * r * np.sqrt(3) / 2) / 6 if name == "triangle" else my
        cand = np.clip(0.5 - world.shape_sdf(np.full(n, k), mx, cy, r), 0, 1)  # [n, R, R]
        ious.append(np.minimum(cand, mask).sum((1, 2)) / np.maximum(np.maximum(cand, mask).sum((1, 2)), 1e-6))
        radii.append(r)
        cys.append(cy)
        if fits:
            cands.append(cand)
    ious = np.stack(ious, 1)  # [n, 4]
    shape = ious.argmax(1)
    pick = np.arange(n)
    radius = np.stack(radii, 1)[pick, shape]
    cy = np.stack(cys, 1)[pick, shape]
    x, y = world.positions(shape, mx, cy, radius)

    iou = ious[pick, shape]
    out = dict(
        shape=shape,
        colour=colour,
        size=(radius >= SIZE_THRESHOLD).astype(np.int64),
        background=(bg.mean(1) >= 0.5).astype(np.int64),
        x=x,
        y=y,
        cx=mx,
        cy=cy,
        grey=bg.mean(1),
        radius=radius,
        rgb=rgb,
        iou=iou,
        shape_ious=ious,
        colour_distance=colour_distance,
        contrast=contrast,
        border_std=border_std,
        unexplained=unexplained,
        steepness=steepness,
    )
    out["valid"] = np.logical_and.reduce([test(out) for test in VALIDITY_TESTS.values()])
    if fits:
        out["fits"] = np.stack(cands, 1)  # [n, 4, R, R]
    return out


def failed_tests(reading: dict) -> list[list[str]]:
    """Per image of a classify() reading, the names of the validity tests it fails (VALIDITY_TESTS; [] when
    valid): why the classifier rejects an image."""
    passed = {name: test(reading) for name, test in VALIDITY_TESTS.items()}
    return [[name for name, ok in passed.items() if not ok[i]] for i in range(len(reading["valid"]))]


def accuracy(pred: dict, truth: dict) -> dict[str, float]:
    """Share of records where the prediction equals the truth, per discrete attribute, and share valid."""
    out = {k: float((pred[k] == truth[k]).mean()) for k in world.ATTRIBUTE_NAMES}
    out["valid"] = float(pred["valid"].mean())
    return out
