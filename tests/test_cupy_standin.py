"""The GPU tests (``pytest -m gpu``) on the CPU, with CuPy replaced by tests/cupy_standin:
NumPy arrays held to CuPy's rules (no implicit copies to the host, no NumPy operands), the
CUDA kernels run by tests/cuda_emulation.py. Tests that need PyTorch's CUDA build skip."""

import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO, subprocess_env


def test_the_gpu_tests_pass_with_the_cupy_standin():
    if shutil.which("g++") is None:
        pytest.skip("the CUDA emulation needs g++")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            str(REPO / "tests"),
        ],
        cwd=REPO,
        env=subprocess_env(MINIVISION_CUPY_STANDIN="1", MINIVISION_HYPOTHESIS_EXAMPLES="10"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = result.stdout[-6000:]
    assert result.returncode == 0, report
    assert "needs CuPy and a CUDA GPU" not in result.stdout, report  # the stand-in stood in
    assert int(re.search(r"(\d+) passed", result.stdout.splitlines()[-1]).group(1)) >= 40, report
