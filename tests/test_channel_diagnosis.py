"""benchmarks/channel_diagnosis.py: the strict probe's samples one by one, on the shipped generator."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import channel_diagnosis  # noqa: E402

from models.stylegan2 import load_generator  # noqa: E402
from shapes.probe import EDIT_ATTRIBUTES  # noqa: E402


@pytest.fixture(scope="module")
def gen():
    return load_generator("demo")


def test_the_summary_is_the_per_sample_readings_summed_up(gen):
    d = channel_diagnosis.diagnose(gen, 3, 88)
    both = [s["minus"]["valid"] and s["plus"]["valid"] for s in d["samples"]]
    assert len(d["samples"]) == 16 and d["valid"] == pytest.approx(np.mean(both))
    kept = [s for s, ok in zip(d["samples"], both) if ok]
    shape_flips = np.mean([s["minus"]["shape"] != s["plus"]["shape"] for s in kept])
    size_flips = np.mean([s["minus"]["size"] != s["plus"]["size"] for s in kept])
    assert d["rates"]["shape"] == pytest.approx(shape_flips) and d["rates"]["size"] == pytest.approx(size_flips)
    assert set(d["rates"]) == set(EDIT_ATTRIBUTES)
    for s in d["samples"]:
        for side in ("before", "minus", "plus"):
            assert bool(s[side]["fails"]) != s[side]["valid"]  # a reason exactly where an image is invalid


def test_the_twin_takes_the_named_layers_from_the_sample_of_the_other_class(gen):
    own = channel_diagnosis.diagnose(gen, 9, 25, twin="background")
    wide = channel_diagnosis.diagnose(gen, 9, 25, twin="background", twin_layers=tuple(range(11)))
    assert own["twin_layers"] == [9] and wide["twin_layers"] == list(range(11))
    # every layer from the twin that is already of the class the push shows: the push starts from that sample
    for s in wide["samples"]:
        if s["before"]["valid"] and s["before"]["grey"] > 0.5 and s["plus"]["grey"] > 0.5:
            assert s["plus"]["valid_with_twin_layer"] == s["plus"]["valid"]


def test_a_channel_that_is_not_a_conv_channel_is_refused(gen):
    with pytest.raises(ValueError, match="not a conv StyleSpace channel"):
        channel_diagnosis.diagnose(gen, 4, 3)  # a toRGB layer
    with pytest.raises(ValueError, match="not a conv StyleSpace channel"):
        channel_diagnosis.diagnose(gen, 3, 999)


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path, capsys):
    for argv, says in (
        (["--channel", "3:88", "--generator", str(tmp_path / "missing.pt")], "does not exist"),
        (["--channel", "4:3"], "not a conv StyleSpace channel"),
        (["--channel", "3:x"], "--channel takes layer:channel"),
    ):
        with pytest.raises(SystemExit) as exit_:
            channel_diagnosis.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "error: " in err.splitlines()[-1] and says in err.splitlines()[-1]
