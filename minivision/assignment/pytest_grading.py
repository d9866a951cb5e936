"""A pytest plugin for grading runs: Hypothesis stops at the first failing example.

A grade needs pass or fail, not the smallest failing example, and shrinking a failure
(then explaining it) costs seconds per test. The grader copies this file beside the
instructor's tests and loads it with ``-p``; it imports nothing from minivision, whose
graded copy may lack this package. ``pytest_configure`` runs after the tests' own
conftest has loaded its Hypothesis profile, so the grading profile extends that one.
"""
from hypothesis import Phase, settings


def pytest_configure(config):
    settings.register_profile("grading", settings(), phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("grading")
