"""Optional packages: a missing one is a one-line error naming the extra that brings it, before
any work, never an ImportError's traceback half-way through a run."""

from __future__ import annotations

import importlib

from .errors import InputError

__all__ = ["require"]


def require(module: str, what: str, extra: str) -> None:
    """Raise `InputError` unless ``module`` imports: ``what`` (an option or command) needs it,
    and the ``extra`` of skoots-triton installs it.

    >>> require("numpy", "--table", "test")
    """
    try:
        importlib.import_module(module)
    except ImportError:
        raise InputError(f"{what} needs {module}, which is not installed: install skoots-triton's {extra} extra "
                         f"(pip install \".[{extra}]\" in the checkout), or pip install {module}") from None
