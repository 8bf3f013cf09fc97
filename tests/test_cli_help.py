"""The two top-level scripts are thin shims: `--help` works from a fresh checkout without building anything."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,word", [("build_index.py", "atlas"), ("query.py", "atlas")])
def test_script_help(script, word):
    out = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and word in out.stdout.lower()
    assert "Traceback" not in out.stderr
