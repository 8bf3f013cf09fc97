"""benchmarks/demo_quality.py prints every table of a full run (the model card's), given its result."""

import importlib.util
from pathlib import Path

from shapes.probe import EDIT_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("demo_quality", ROOT / "benchmarks" / "demo_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(layer, channel, moved):
    rates = {a: (0.75 if a == moved else 0.0) for a in EDIT_ATTRIBUTES}
    return dict(layer=layer, channel=channel, valid=1.0, rates=rates, shifts=dict(rates))


def _cell(n, same, plus, minus):
    return dict(n=n, same=same, plus=plus, minus=minus)


def test_a_full_result_prints_the_continuous_and_the_family_tables(capsys):
    dq = _module()
    accuracy = dict(shape=1.0, colour=1.0, size=1.0, background=1.0)
    quality = dict(valid=0.9, shape_as_z=0.8, colour_as_z=0.97, size_as_z=0.99, background_as_z=1.0)
    quality["shape_as_z_cells"] = {"small circle": 0.99, "small cross": 0.16, "large cross": None}
    best = dict(layer=5, channel=78, strict=True, flip_rate=0.58, side_effects={a: 0.0 for a in EDIT_ATTRIBUTES})
    edit = dict(prompt="red", channels=22, reached=0.8, redder=1.0, valid_after=0.5, kept_shape=0.97)
    result = dict(
        n=10,
        renderer=dict(batched_images_per_s=1000.0, one_at_a_time_images_per_s=100.0),
        classifier=dict(accuracy, valid=1.0),
        zero_shot=dict(demo=accuracy, untrained=accuracy),
        zero_shot_on_samples=accuracy,
        generator={"demo psi=0.7": quality},
        stylespace=dict(
            conv_channels=672,
            seconds=1.0,
            single_attribute={a: int(a == "shape") for a in EDIT_ATTRIBUTES},
            top={a: [(5, 78, 0.58)] if a == "shape" else [] for a in EDIT_ATTRIBUTES},
            dominant={a: 0 for a in EDIT_ATTRIBUTES},
            dominant_top={a: [] for a in EDIT_ATTRIBUTES},
            strongest={a: _record(3, 88, a) for a in EDIT_ATTRIBUTES},
        ),
        families=dict(
            channels={a: dict(single_attribute=int(a == "shape"), best=dict(best)) for a in EDIT_ATTRIBUTES},
            edit_seconds=2.0,
            load=(0.5, 0.5, 0.5),
            edits=dict(colour=edit),
            robustness=dict(
                shape=dict(
                    layer=5,
                    channel=78,
                    sets=6,
                    strict_sets=1,
                    strict_pooled=False,
                    flip_rate=0.34,
                    side_effects={a: 0.01 if a == "colour" else 0.0 for a in EDIT_ATTRIBUTES if a != "shape"},
                    valid=0.87,
                )
            ),
            ends=dict(
                shape=dict(layer=5, channel=78, cells={"small circle": _cell(12, 0.5, 1.0, 0.5), "small cross": None}),
                size=dict(layer=3, channel=88, cells={"small circle": _cell(20, 0.45, 1.0, 0.05), "small cross": None}),
            ),
        ),
    )
    dq.print_tables(result)
    out = capsys.readouterr().out
    assert "| demo psi=0.7 | 99.0 % | 16.0 % | - |" in out  # shape as z per cell (None: no valid sample)
    assert "| size | 0 | - | (3, 88) 0.00 / 0.00 / 0.75 / 0.00 / 0.00 |" in out  # the continuous table
    assert "| shape | 1 | (5, 78) | 0.58 |" in out  # the per-family table, after it
    assert "| colour | red | 22 | 80.0 % | 100.0 % | 97.0 % |" in out
    assert "The best channels on 6 sample sets" in out  # robustness: strict in 1 of 6 sets, not when pooled
    assert "| shape | (5, 78) | 1 of 6 | no | 0.34 | - / 0.01 / 0.00 / 0.00 / 0.00 | 87 % |" in out
    # where the side effects sit: per cell of z, both channels' shape kept between ends, the size ends as z
    assert "| shape (5, 78) | size (3, 88) | size: + / - end as z |" in out
    assert "| small circle | 50 % (12) | 45 % (20) | 100 % / 5 % |" in out
    assert "| small cross | - | - | - |" in out
