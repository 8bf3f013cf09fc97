"""The JSON objects of the `direction`, `channels` and `channel` commands, shared by the CLI and the web API."""

from __future__ import annotations


def direction_report(atlas, d, show: int = 10, full: bool = False) -> dict:
    """`direction --json`: prompt, neutral, beta, num_c and the `show` strongest channels (full: every score)."""
    obj = d.to_dict(show)
    if full:
        obj.update(channels=atlas.channels, scores=d.scores, delta_s=d.delta_s)
    return obj


def channels_report(atlas, d, show: int = 20) -> dict:
    """`channels --json`: the channels `d` moves, strongest first, with resolution, consistency and labels."""
    rows = [dict(atlas.channel_info(r, d.scores[r]), delta_s=float(d.delta_s[r])) for r in d.active[:show]]
    return dict(prompt=d.prompt, neutral=d.neutral, beta=d.beta, num_c=d.num_c, channels=rows)


def channel_report(atlas, layer: int, channel: int, k: int = 10) -> dict:
    """`channel --json`: one channel's place, statistics and the k vocabulary phrases that best name it."""
    info = atlas.channel_info(atlas.row(layer, channel))
    words = atlas.channel_words(layer, channel, k)
    return dict(info, words=[dict(phrase=p, score=s) for p, s in words])
