"""The one error type of a bad config value, shared by the checks and the modules they call.

Its own module so that a module the checks call (e.g. :mod:`train.training.compilation`)
can raise it without importing the checks.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid; the message says which key and how to fix it."""
