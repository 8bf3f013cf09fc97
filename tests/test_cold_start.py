"""Commands that answer from the atlas alone (vocabulary prompts, channel words, SQL, export) import neither torch
nor open_clip: a shell query costs the atlas read, not a 2 s torch import. Models load only when needed."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "torchvision")
PROBE = (
    "import sys; from query.cli import main; main(sys.argv[1:]); "
    f"print('heavy:', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
)


@pytest.fixture(scope="module")
def world(shared_world, tmp_path_factory):
    """The session's tiny world (conftest; read here, never changed) and a prompt file for export."""
    prompts = tmp_path_factory.mktemp("cold") / "prompts.txt"
    prompts.write_text("red\ngreen\n")
    return dict(shared_world, prompts=prompts)


def heavy_modules(world, *argv):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv, "--atlas", str(world["atlas"]), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    line = [l for l in done.stderr.splitlines() if l.startswith("heavy:")][-1]
    return line.split(":", 1)[1].strip()


@pytest.mark.slow
def test_atlas_only_commands_import_no_torch(world, tmp_path):
    for argv in (
        ["direction", "red"],
        ["direction", "Red", "--beta", "auto", "-n", "3"],
        ["direction", "red:1 + green:0.5"],
        ["channels", "blue", "--top-k", "4"],
        ["similar", "red"],
        ["channel", "0", "3"],
        ["sql", "SELECT count(*) AS n FROM channels"],
        ["export", str(world["prompts"]), "-o", str(tmp_path / "lib.npz")],
        ["export", str(world["prompts"]), "-o", str(tmp_path / "lib.h5")],
    ):
        assert heavy_modules(world, *argv) == "[]", argv


@pytest.mark.slow
def test_a_new_prompt_still_loads_clip_when_needed(world):
    loaded = heavy_modules(world, "direction", "a big red circle", "--beta", "0.01", "--clip", str(world["clip"]))
    assert "torch" in loaded and "open_clip" in loaded
