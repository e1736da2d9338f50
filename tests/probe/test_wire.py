"""The wire's frames, both kinds of payload: JSON as it is, and compressed past COMPRESS_OVER."""

from __future__ import annotations

from nameko_chassis.probe import wire


def _round_trip(result: object) -> tuple[str, object]:
    frame = wire.result_frame(result, 0.0)
    kind, decoded, _stall = wire.decode_frame(frame.encode("ascii"), 0)
    return kind, decoded


def test_a_payload_up_to_the_limit_travels_as_json() -> None:
    result = {"x": "a" * (wire.COMPRESS_OVER - 20)}
    kind, decoded = _round_trip(result)
    assert kind == "j"
    assert decoded == result


def test_a_larger_payload_travels_compressed_and_decodes_the_same() -> None:
    result = {"x": "a" * (wire.COMPRESS_OVER + 1), "y": [1, 2.5, None, "é"]}
    kind, decoded = _round_trip(result)
    assert kind == "z"
    assert decoded == result
    encoded = wire.Encoded('{"already":"json","s":"' + "b" * (wire.COMPRESS_OVER + 1) + '"}')
    kind, decoded = _round_trip(encoded)
    assert kind == "z"
    assert decoded == {"already": "json", "s": "b" * (wire.COMPRESS_OVER + 1)}
