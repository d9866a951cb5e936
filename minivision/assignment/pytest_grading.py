"""A pytest plugin for grading runs: it sends each test's outcome to the grader on a private
socket, reports any change to the instructor's tests, and stops Hypothesis at the first
failing example.

The grader copies this file beside the instructor's tests as ``minivision_grading.py`` and
loads it with ``-p``, so pytest imports it before any conftest or test module, and so before
the graded package. At import it reads the token the grader sent down the socket (whose
descriptor number is in ``MINIVISION_GRADING_FD``), keeps the functions it calls (taken from
``os``, ``io``, ``hashlib`` and ``json`` before the graded code can replace them), and takes
a digest of every file under ``tests/``. Each record is one line, the token then a JSON
object: ``collected`` (the node ids left after ``-m`` deselection), ``collect_error``,
``report`` (one per setup, call and teardown) and ``changed`` (files under ``tests/`` that no
longer match their digest; checked before each test file is collected and at each report).
It imports nothing from minivision, whose graded copy may lack this package.

A grade needs pass or fail, not the smallest failing example, and shrinking a failure
(then explaining it) costs seconds per test. ``pytest_configure`` runs after the tests'
own conftest has loaded its Hypothesis profile, so the grading profile extends that one.
"""

import hashlib
import json
import os

from hypothesis import Phase, settings

_read, _write, _scandir, _open, _sha256, _dumps = (
    os.read,
    os.write,
    os.scandir,
    open,
    hashlib.sha256,
    json.dumps,
)
_HERE = os.path.dirname(os.path.abspath(__file__))
_TESTS = os.path.join(_HERE, "tests")
MESSAGE_CHARS = 4000  # of a failure's text: enough for its last error line


def _open_channel():
    """(the socket's descriptor, the token and a space), or (None, b"") outside a grading run."""
    fd = os.environ.pop("MINIVISION_GRADING_FD", None)
    if fd is None:
        return None, b""
    fd, token = int(fd), b""
    while not token.endswith(b"\n"):  # the grader sent it before starting pytest
        chunk = _read(fd, 64)
        if not chunk:
            break
        token += chunk
    return fd, token.strip() + b" "


def _digests(folder=_TESTS) -> dict:
    """{path: sha256 hex digest} of every file under ``folder``; "unreadable" for a file or
    folder that cannot be read (a deleted folder, say)."""
    found = {}
    try:
        with _scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    found.update(_digests(entry.path))
                    continue
                try:
                    with _open(entry.path, "rb") as f:
                        found[entry.path] = _sha256(f.read()).hexdigest()
                except OSError:
                    found[entry.path] = "unreadable"
    except OSError:
        found[folder] = "unreadable"
    return found


_FD, _PREFIX = _open_channel()
_SNAPSHOT = _digests() if _FD is not None else {}


def _send(**record) -> None:
    if _FD is None:
        return
    data = _PREFIX + _dumps(record).encode() + b"\n"
    while data:
        data = data[_write(_FD, data) :]


def _check_tests() -> None:
    """Send the files under tests/ that were changed, added or removed since the import."""
    if _FD is None:
        return
    now = _digests()
    changed = sorted(
        path for path in now.keys() | _SNAPSHOT.keys() if now.get(path) != _SNAPSHOT.get(path)
    )
    if changed:
        _send(event="changed", files=[os.path.relpath(path, _HERE) for path in changed])


def _failure(report) -> dict:
    """What a report that did not pass says: ``crash``, the exception's message (or a skip's
    reason), and ``text``, the end of the full report."""
    if report.passed:
        return {}
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        return {"crash": str(report.longrepr[2])}
    crash = getattr(report.longrepr, "reprcrash", None)
    return {
        "crash": crash.message[:MESSAGE_CHARS] if crash is not None else "",
        "text": str(report.longrepr)[-MESSAGE_CHARS:],
    }


def pytest_configure(config):
    settings.register_profile(
        "grading", settings(), phases=[Phase.explicit, Phase.reuse, Phase.generate]
    )
    settings.load_profile("grading")


def pytest_collect_file():
    _check_tests()  # before the file is imported, so a test file rewritten by the graded code is caught


def pytest_collectreport(report):
    if report.failed:
        _send(event="collect_error", nodeid=report.nodeid, **_failure(report))


def pytest_collection_finish(session):
    _check_tests()
    _send(event="collected", nodeids=[item.nodeid for item in session.items])


def pytest_runtest_logreport(report):
    _check_tests()
    _send(
        event="report",
        nodeid=report.nodeid,
        when=report.when,
        outcome=report.outcome,
        **_failure(report),
    )
