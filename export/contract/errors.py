"""The root of every error a user can cause, in the client, in export and in serve.

Each side has its own base (``ClientError``, ``ExportError``) under `SkootsError`, so a
caller that drives both — a notebook, a pipeline, a GUI — catches one class for "the user's
mistake, not a bug"; the command lines print any of them as one line.
"""

from __future__ import annotations

__all__ = ["SkootsError", "OptionError"]


class SkootsError(Exception):
    """Base class: a problem with input, options, a model, a server or the environment — not a bug."""


class OptionError(SkootsError):
    """An option's value is malformed (a triple, a unit): the message names the option and a fix."""
