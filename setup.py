"""Kept so that ``python setup.py develop`` and old pips work; the metadata is in pyproject.toml."""

from setuptools import setup

setup()
