"""Where the shipped Hydra configs live: in a source checkout ``conf/``, installed ``train/conf``.

A wheel carries the config tree as package data under ``train/conf`` (pyproject.toml maps
the top-level ``conf/`` there); a checkout or editable install reads ``conf/`` directly.
Users add their own groups with Hydra's ``--config-dir DIR`` (searched first).
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def config_dir() -> str:
    """Absolute path of the primary config directory."""
    for candidate in (_PACKAGE / "conf", _PACKAGE.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"recflow's configs are missing: neither {_PACKAGE / 'conf'} nor {_PACKAGE.parent / 'conf'} "
        "holds train.yaml; reinstall the package (pip install --force-reinstall recflow)"
    )


CONFIG_DIR = config_dir()
