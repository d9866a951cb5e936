"""Every tutorial runs top to bottom as a script in fast mode, and its asserts hold."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import subprocess_env

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((REPO / "tutorials").glob("[0-9][0-9]_*.py"))


def test_tutorials_are_found():
    assert len(TUTORIALS) >= 5


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_in_fast_mode(path, tmp_path):
    env = subprocess_env(MINIVISION_FAST="1", MINIVISION_FIGURES=str(tmp_path), MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{path.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
