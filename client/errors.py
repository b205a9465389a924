"""Errors a user can cause while segmenting; the CLI prints each as one line and exits 2."""

from collections.abc import Sequence
from typing import Any

from skoots_export.contract.errors import SkootsError

__all__ = [
    "ClientError", "InputError", "OutputError", "ModelError", "UrlError", "ServerUnavailableError", "InferenceTimeoutError",
    "DeviceError", "ViewerError", "Interrupted", "BlockFailures",
]


class ClientError(SkootsError):
    """Base class: a problem with input, options, the server or the environment — not a bug."""


class InputError(ClientError):
    """The input volume cannot be read or is not something SKOOTS can segment."""


class OutputError(ClientError):
    """The output cannot be written where asked."""


class ModelError(ClientError):
    """The model (repository, config, TorchScript) is missing or does not speak the contract."""


class UrlError(ClientError):
    """``--url`` is not the address of a Triton gRPC port (a scheme, a path, Triton's HTTP port)."""


class ServerUnavailableError(ClientError):
    """No server answered at the given address."""


class InferenceTimeoutError(ClientError):
    """A server accepted requests but did not answer in time, even after retries."""


class DeviceError(ClientError):
    """The requested compute device is not available."""


class ViewerError(ClientError):
    """The local Neuroglancer of ``view`` cannot start or render: its port is taken, no
    headless Chromium for ``--screenshot``, the view did not load in time."""


class Interrupted(ClientError):
    """The user interrupted the run (Ctrl-C); the CLI exits 130."""


class BlockFailures(ClientError):
    """Blocks of a blockwise run failed after their retries (a corrupt input chunk, a worker
    out of memory); the other blocks finished and are kept in the work directory, and a run
    with ``--resume`` redoes only the failed and unfinished ones. The message has one line per
    failed block (its stage, name, region and error) and each stage's counts; ``failures``
    holds the `FailedBlock` records and ``stats`` the run's `RunStats` (``stage_counts()``:
    each stage's done / failed / remaining blocks). The CLI prints it and exits 2."""

    def __init__(self, message: str, failures: Sequence[Any] = (), stats: Any = None) -> None:
        super().__init__(message)
        self.failures = list(failures)
        self.stats = stats
