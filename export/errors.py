"""Errors a user can cause during export; the CLI prints each as one line and exits non-zero."""

from .contract.errors import OptionError, SkootsError

__all__ = [
    "ExportError", "CheckpointError", "ArchitectureError", "StateDictMismatchError", "VerificationError", "ModelCardError",
    "ExportOptionError", "ServerError", "PortInUseError",
]


class ExportError(SkootsError):
    """Base class: a problem with the user's input, not a bug."""


class CheckpointError(ExportError):
    """The checkpoint file is missing, unreadable, unsafe or not a SKOOTS checkpoint."""


class ArchitectureError(ExportError):
    """``cfg.MODEL`` names an architecture, block or value this runtime cannot build."""


class StateDictMismatchError(ExportError):
    """The weights do not fit the network that ``cfg.MODEL`` describes."""


class VerificationError(ExportError):
    """The TorchScript module does not reproduce the eager network."""


class ModelCardError(ExportError):
    """A model card (in the checkpoint or a YAML sidecar) has an unknown key or a bad value."""


class ExportOptionError(ExportError, OptionError):
    """An export option is out of range."""


class ServerError(ExportError):
    """tritonserver could not be found, started, or did not become ready."""


class PortInUseError(ServerError):
    """A port given to ``skoots serve`` is held by another process."""
