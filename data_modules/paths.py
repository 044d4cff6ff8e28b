"""Paths as a user writes them: ``~`` and ``$VAR``/``${VAR}`` expanded.

The shell leaves the ``~`` of ``data.root=~/data`` alone (the word is no variable
assignment), a quoted override or a config file hands ``~`` and ``$VAR`` over literally,
and ``pathlib.Path`` expands neither, so every path option goes through
:func:`expand_path` before it is used.
"""
from __future__ import annotations

import os
from pathlib import Path


def expand_path(path: str | os.PathLike) -> Path:
    """``path`` with environment variables and a leading ``~``/``~user`` expanded."""
    return Path(os.path.expanduser(os.path.expandvars(os.fspath(path))))
