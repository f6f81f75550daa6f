"""Errors that brainiron reports to people, not tracebacks.

Every problem with a user's input is raised as :class:`InputError`, whose message is one line
naming the file and the problem, e.g. ``sub-01_Chimap.nii.gz: all values are NaN``. The CLI and
the workflow rules print that line and exit non-zero.
"""

from __future__ import annotations

import os


class BrainironError(Exception):
    """Base class of the errors brainiron reports as one line (no traceback)."""


class InputError(BrainironError, ValueError):
    """A problem with one input file (or folder): unreadable, wrong shape, wrong units, ...

    Parameters
    ----------
    path : str or os.PathLike or None
        The offending file. ``None`` when the problem is not tied to one file.
    problem : str
        What is wrong, in words a researcher understands, ideally with the fix.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        message = problem if self.path is None else f"{self.path}: {problem}"
        super().__init__(message.replace("\n", " "))


class MissingPackageDataError(BrainironError, FileNotFoundError):
    """Reference data that should ship inside a PyPI package is not installed."""


class ConfigError(BrainironError, ValueError):
    """The configuration is invalid (unknown key, wrong type, impossible combination)."""
