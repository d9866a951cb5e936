"""The functional, ops, models and gradcheck tests again, with every op routed through
``minivision.reference`` (``MINIVISION_REFERENCE=1``): the reference must pass the tests the
fast paths pass, PyTorch parity included."""

import re
import subprocess
import sys

from tests.helpers import REPO, subprocess_env

SUITES = (
    "tests/reference",
    "tests/functional",
    "tests/ops",
    "tests/models",
    "tests/test_gradcheck.py",
)


def test_the_op_and_model_tests_pass_through_the_reference():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not gpu",
            *(str(REPO / suite) for suite in SUITES),
        ],
        cwd=REPO,
        env=subprocess_env(MINIVISION_REFERENCE="1", MINIVISION_HYPOTHESIS_EXAMPLES="5"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = result.stdout[-6000:]
    assert result.returncode == 0, report
    assert int(re.search(r"(\d+) passed", result.stdout.splitlines()[-1]).group(1)) >= 700, report
