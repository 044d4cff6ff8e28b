"""Ships the top-level ``conf/`` tree inside the wheel as ``train/conf``.

``pyproject.toml`` holds all metadata. This file exists because a package whose folder
lies outside its parent's (``train.conf`` -> ``conf/``, mapped in pyproject.toml's
``package-dir``) cannot be found by ``[tool.setuptools.packages.find]``. Both lists are
discovered, so new code subpackages and config groups need no edit here.
"""
from setuptools import find_namespace_packages, find_packages, setup

CODE = ["train", "train.*", "recmodels", "recmodels.*", "data_modules", "data_modules.*"]


def config_packages() -> list[str]:
    """``train.conf`` and one package per config group folder (they hold YAML only)."""
    return ["train.conf", *(f"train.conf.{name}" for name in find_namespace_packages(where="conf"))]


setup(packages=[*find_packages(include=CODE), *config_packages()])
