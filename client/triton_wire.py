"""One Triton ``ModelInfer`` call built and read by hand: the same protobuf messages on the wire
as tritonclient's, with fewer copies of the tensors.

tritonclient copies a batch three times on the way out (``tobytes``, into the protobuf, the
protobuf's serialisation) and each answer three or four times on the way in (gRPC's bytes,
the protobuf's parse, ``raw_output_contents[i]``, and once more when anything lists them).
Here the request is the serialised header (names, shapes, outputs asked for) followed by the
``raw_input_contents`` field written straight from the batch's buffer (one copy), and the reply
stays the one ``bytes`` object gRPC hands over: its ``raw_output_contents`` are located by
walking the top-level fields and viewed in place (``np.frombuffer``), only the small header is
parsed by protobuf. With shared memory (`Region`) neither carries tensors at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .answers import NUMPY_TYPES

__all__ = ["MODEL_INFER", "Exchange", "Reply", "RegionPlace", "request_bytes", "parse_reply", "rpc_error"]

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"

_RAW_INPUT_TAG = b"\x3a"  # field 7 (raw_input_contents), length-delimited
_RAW_OUTPUT_FIELD = 6  # ModelInferResponse.raw_output_contents


@dataclass(frozen=True)
class RegionPlace:
    """Where a tensor lies in a registered shared-memory region: its name, byte offset, size."""

    region: str
    offset: int
    byte_size: int


@dataclass(frozen=True)
class Reply:
    """A parsed ``ModelInferResponse``: its header (outputs' names, types, shapes) and, per
    output in the header's order, its raw bytes viewed in the reply (empty with shared memory)."""

    header: Any  # ModelInferResponse without raw_output_contents
    raw: list[memoryview]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _shm_parameters(parameters: Any, place: RegionPlace) -> None:
    parameters["shared_memory_region"].string_param = place.region
    parameters["shared_memory_byte_size"].int64_param = place.byte_size
    if place.offset:
        parameters["shared_memory_offset"].int64_param = place.offset


def request_bytes(
    model: str, input_name: str, batch: np.ndarray | None, shape: Sequence[int], outputs: Sequence[str],
    *, input_place: RegionPlace | None = None, output_places: Sequence[RegionPlace] | None = None,
) -> bytes:
    """A serialised ``ModelInferRequest`` for one FP16 input of ``shape``: its bytes from
    ``batch`` (C-contiguous), or, with ``input_place``, read by the server from shared memory;
    the ``outputs`` asked for are written to ``output_places`` when given."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name=input_name, datatype="FP16", shape=list(shape))
    if input_place is not None:
        _shm_parameters(tensor.parameters, input_place)
    for index, name in enumerate(outputs):
        output = request.outputs.add(name=name)
        if output_places is not None:
            _shm_parameters(output.parameters, output_places[index])
    header = request.SerializeToString()
    if input_place is not None or batch is None:
        return header
    data = np.ascontiguousarray(batch).data.cast("B")
    return b"".join((header, _RAW_INPUT_TAG, _varint(data.nbytes), data))


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def parse_reply(data: bytes) -> Reply:
    """Split a serialised ``ModelInferResponse`` into its parsed header and views of its raw
    outputs, without copying them."""
    from tritonclient.grpc import service_pb2

    view = memoryview(data)
    header_parts: list[memoryview] = []
    raw: list[memoryview] = []
    at = 0
    while at < len(data):
        start = at
        key, at = _read_varint(data, at)
        field, wire = key >> 3, key & 7
        if wire == 2:
            length, at = _read_varint(data, at)
            end = at + length
        elif wire == 0:
            _, end = _read_varint(data, at)
        elif wire in (1, 5):
            end = at + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} in a ModelInferResponse")
        if field == _RAW_OUTPUT_FIELD and wire == 2:
            raw.append(view[at:end])
        else:
            header_parts.append(view[start:end])
        at = end
    return Reply(service_pb2.ModelInferResponse.FromString(b"".join(header_parts)), raw)


def rpc_error(error: Any) -> Exception:
    """A gRPC error as tritonclient raises it (``InferenceServerException`` with ``status()``
    and ``message()``), so retries treat both alike."""
    from tritonclient.utils import InferenceServerException

    return InferenceServerException(msg=error.details() or str(error), status=str(error.code()))


class Exchange:
    """One batch's ``ModelInfer``: its serialised ``request``, and how the reply's outputs are
    read — views of the reply's bytes, or with ``pool`` (a `SharedMemoryPool`) of the region
    the batch was written into and the server writes its outputs into."""

    def __init__(self, model: str, input_name: str, batch: np.ndarray, specs: Sequence[Any], pool: Any = None) -> None:
        shape = tuple(batch.shape)
        self.shape = shape
        self.outputs = [(spec.name, np.dtype(NUMPY_TYPES[spec.data_type]), (shape[0], spec.dims[0], *shape[2:])) for spec in specs]
        names = [name for name, _, _ in self.outputs]
        self._lease = None
        if pool is None:
            self.request = request_bytes(model, input_name, batch, shape, names)
            return
        sizes = [batch.nbytes] + [int(np.prod(s)) * dtype.itemsize for _, dtype, s in self.outputs]
        self._offsets, total = pool.layout(sizes)
        self._lease = pool.lease(total)
        self._lease.view(np.float16, shape, self._offsets[0])[...] = batch  # the one copy of the batch
        self._stamp()
        places = [RegionPlace(self._lease.name, o, n) for o, n in zip(self._offsets, sizes)]
        self.request = request_bytes(model, input_name, None, shape, names, input_place=places[0], output_places=places[1:])

    def _views(self) -> list[np.ndarray]:
        assert self._lease is not None
        return [self._lease.view(dtype, shape, self._offsets[1 + i]).reshape(-1) for i, (_, dtype, shape) in enumerate(self.outputs)]

    def _stamp(self) -> None:
        """Mark the first and last element of each output's place with a value no answer holds
        (NaN in FP16 outputs, 255 in the 0/1 skeleton): a server that answers without writing
        its outputs leaves the marks, where the bytes of a gRPC reply would be short."""
        for view in self._views():
            view[0] = view[-1] = np.nan if view.dtype.kind == "f" else np.iinfo(view.dtype).max

    def unwritten(self) -> str | None:
        """With shared memory, the name of an output the server did not write (its marks are
        still there), or None."""
        if self._lease is None:
            return None
        for (name, _, _), view in zip(self.outputs, self._views()):
            marked = np.isnan(view[[0, -1]]) if view.dtype.kind == "f" else view[[0, -1]] == np.iinfo(view.dtype).max
            if marked.any():
                return name
        return None

    def sizes(self, reply: Reply) -> list[int]:
        """The bytes of each output in the reply's order: its raw contents', or, in shared
        memory, what the shape and type the server states take."""
        if self._lease is None:
            return [len(raw) for raw in reply.raw]
        return [int(np.prod(o.shape)) * np.dtype(NUMPY_TYPES.get("TYPE_" + o.datatype, np.uint8)).itemsize for o in reply.header.outputs]

    def arrays(self, reply: Reply) -> tuple[np.ndarray | None, ...]:
        """The outputs asked for, in the order asked, as arrays viewing the reply or the region
        (None for one the reply lacks); never copies."""
        index = {output.name: i for i, output in enumerate(reply.header.outputs)}
        return tuple(
            None if name not in index
            else self._lease.view(dtype, shape, self._offsets[1 + i]) if self._lease is not None
            else np.frombuffer(reply.raw[index[name]], dtype).reshape(shape)
            for i, (name, dtype, shape) in enumerate(self.outputs)
        )
