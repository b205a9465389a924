"""The hand-built ``ModelInfer`` messages are tritonclient's own, and replies are read in place."""

from __future__ import annotations

import numpy as np

from skoots_client.triton_wire import RegionPlace, parse_reply, request_bytes


def test_a_request_is_the_message_tritonclient_builds() -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2
    from tritonclient.grpc._utils import _get_inference_request

    batch = np.random.default_rng(0).random((2, 1, 8, 6, 4)).astype(np.float16)
    tensor = grpcclient.InferInput("input__0", list(batch.shape), "FP16")
    tensor.set_data_from_numpy(batch)
    theirs = _get_inference_request(
        model_name="skoots", inputs=[tensor], model_version="", request_id="",
        outputs=[grpcclient.InferRequestedOutput(n) for n in ("vectors__0", "skeleton__1")],
        sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None,
    )
    ours = request_bytes("skoots", "input__0", batch[:, :, ::-1][:, :, ::-1], batch.shape, ["vectors__0", "skeleton__1"])
    assert service_pb2.ModelInferRequest.FromString(ours) == theirs
    assert ours.endswith(batch.tobytes())


def test_a_shared_memory_request_names_the_places_and_carries_no_tensor() -> None:
    from tritonclient.grpc import service_pb2

    places = [RegionPlace("r", 0, 384), RegionPlace("r", 384, 1152), RegionPlace("r", 1536, 192)]
    message = service_pb2.ModelInferRequest.FromString(
        request_bytes("skoots", "input__0", None, (2, 1, 8, 6, 2), ["vectors__0", "skeleton__1"], input_place=places[0], output_places=places[1:])
    )
    assert not message.raw_input_contents
    assert message.inputs[0].parameters["shared_memory_region"].string_param == "r"
    assert message.inputs[0].parameters["shared_memory_byte_size"].int64_param == 384
    assert [o.parameters["shared_memory_offset"].int64_param for o in message.outputs] == [384, 1536]


def test_a_reply_is_split_into_its_header_and_views_of_its_raw_outputs() -> None:
    from tritonclient.grpc import service_pb2

    vectors = np.arange(2 * 3 * 4, dtype=np.float16).reshape(2, 3, 4)
    skeleton = (np.arange(8) % 2).astype(np.uint8)
    response = service_pb2.ModelInferResponse(model_name="skoots", id="7")
    response.outputs.add(name="vectors__0", datatype="FP16", shape=vectors.shape)
    response.outputs.add(name="skeleton__1", datatype="UINT8", shape=skeleton.shape)
    response.raw_output_contents.extend([vectors.tobytes(), skeleton.tobytes()])
    data = response.SerializeToString()
    reply = parse_reply(data)
    assert [o.name for o in reply.header.outputs] == ["vectors__0", "skeleton__1"] and reply.header.id == "7"
    assert np.array_equal(np.frombuffer(reply.raw[0], np.float16).reshape(vectors.shape), vectors)
    assert np.array_equal(np.frombuffer(reply.raw[1], np.uint8), skeleton)
    assert reply.raw[0].obj is data  # a view of the reply's bytes, not a copy
