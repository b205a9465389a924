"""The closed choices of a run (``--device``, ``--runtime``, ``--precision``, ``--ngff-version``,
``--labels-dtype``, ``--shared-memory``)
as enums: the command line lists them in ``--help`` and refuses others, the API takes a member or
its text, and the code compares members rather than strings.

Each is a ``str`` enum whose member equals and prints as its text (``Device.GPU == "gpu"``), so
a value crosses a process boundary, a fingerprint or a message unchanged.
"""

from __future__ import annotations

from typing import TypeVar

from skoots_export.contract.choices import Choice, Device  # one Device for export and client

from .errors import InputError

__all__ = ["Choice", "Device", "Runtime", "Precision", "NgffVersion", "LabelsDtype", "SharedMemory", "choice"]

_C = TypeVar("_C", bound="Choice")


class Runtime(Choice):
    """What runs the model in-process: the fastest the machine has (``auto``), or as named."""

    AUTO = "auto"
    OPENVINO = "openvino"
    TORCHSCRIPT = "torchscript"
    CUDA = "cuda"


class Precision(Choice):
    """In-process precision: ``bf16`` only with OpenVINO on CPUs that compute it natively."""

    FP32 = "fp32"
    BF16 = "bf16"


class NgffVersion(Choice):
    """OME-NGFF version of an ``.ome.zarr`` output: 0.4 (Zarr v2) or 0.5 (Zarr v3)."""

    V0_4 = "0.4"
    V0_5 = "0.5"


class LabelsDtype(Choice):
    """The labels' integer type in every output format: ``uint32`` (the default; ``uint64`` past
    2**32 - 1 instances, see `skoots_client.postprocess.labels_dtype`) or ``uint64``
    (what Paintera and most EM tools expect in N5 and Zarr)."""

    UINT32 = "uint32"
    UINT64 = "uint64"


class SharedMemory(Choice):
    """How requests and answers reach a server: gRPC messages (``none``), or Triton system
    shared memory (``system``) with a server on this machine."""

    NONE = "none"
    SYSTEM = "system"


def choice(kind: type[_C], value: _C | str, option: str, hint: str = "") -> _C:
    """``value`` (a member or its text) as a member of ``kind``; one line naming the choices otherwise.

    >>> choice(Device, "gpu", "--device") is Device.GPU
    True
    """
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{option} {value!r}: {hint or 'choose ' + ', '.join(kind.texts())}") from None
