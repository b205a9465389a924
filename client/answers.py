"""Is a server's answer to a batch an answer? Its bytes, then its arrays, against the contract.

Checked before anything is decoded: an output whose bytes do not fill the shape the contract
promises would otherwise surface as a reshape error deep in the client, or as zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NUMPY_TYPES", "answer_problem", "answer_size_problem"]

NUMPY_TYPES = {"TYPE_FP16": np.float16, "TYPE_UINT8": np.uint8}  # the contract's output types


def answer_problem(answer: tuple[Any, ...], specs: list[Any], batch_shape: tuple[int, ...]) -> str | None:
    """What is wrong with a server's answer to a batch of ``batch_shape``, or None."""
    for spec, array in zip(specs, answer):
        shape = (batch_shape[0], spec.dims[0], *batch_shape[2:])
        if array is None:
            return f"no {spec.name} in the answer"
        if array.shape != shape or array.dtype != NUMPY_TYPES[spec.data_type]:
            return f"{spec.name} of {array.dtype} {list(array.shape)} instead of {np.dtype(NUMPY_TYPES[spec.data_type])} {list(shape)}"
    return None


_WIRE_TYPES = {"TYPE_FP16": "FP16", "TYPE_UINT8": "UINT8"}


def answer_size_problem(outputs: Any, sizes: list[int], specs: list[Any], batch_shape: tuple[int, ...]) -> str | None:
    """What is wrong with the bytes of a server's answer to a batch of ``batch_shape``, checked
    before anything is decoded, or None. ``outputs`` are the reply's output tensors (a gRPC
    ``ModelInferResponse``'s ``outputs``: names, types, shapes), ``sizes`` the bytes of each.

    An output whose bytes do not fill the shape the contract promises is not an answer: a
    Python-backend stub whose environment has NumPy 2 answers with the right shapes and zero
    bytes, which would otherwise surface as a reshape error deep in the client."""
    for index, output in enumerate(outputs):
        spec = next((s for s in specs if s.name == output.name), None)
        if spec is None:
            continue
        shape = (batch_shape[0], spec.dims[0], *batch_shape[2:])
        expected = int(np.prod(shape)) * np.dtype(NUMPY_TYPES[spec.data_type]).itemsize
        got = sizes[index] if index < len(sizes) else 0
        if output.datatype != _WIRE_TYPES[spec.data_type] or got != expected:
            return (f"{spec.name} of {got:,} bytes ({output.datatype} {list(output.shape)}) where "
                    f"{_WIRE_TYPES[spec.data_type]} {list(shape)} needs {expected:,}")
    return None
