"""Command-line entry points, one thin file each: parse the config, call the library.

Installed as ``recflow-train``, ``recflow-evaluate``-style console commands (see
pyproject.toml); each module also runs as ``python -m train.cli.<name>``. Heavy
libraries are imported inside ``main`` so ``--help`` answers at once.
"""
