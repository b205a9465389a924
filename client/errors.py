"""Errors a user can cause while segmenting; the CLI prints each as one line and exits 2."""

from skoots_export.contract.errors import SkootsError

__all__ = [
    "ClientError", "InputError", "OutputError", "ModelError", "UrlError", "ServerUnavailableError", "InferenceTimeoutError",
    "DeviceError", "Interrupted",
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


class Interrupted(ClientError):
    """The user interrupted the run (Ctrl-C); the CLI exits 130."""
