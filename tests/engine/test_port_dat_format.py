"""The ``.dat`` reader: reads dlib's real network files to the last byte, refuses anything else."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from face_engine.port.dat_format import DatFormatError, DatReader, parse_network, parse_network_bytes
from face_engine.weights import MMOD_DETECTOR, RESNET, weight_path

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def resnet_bytes() -> bytes:
    return weight_path(RESNET).read_bytes()


@pytest.fixture(scope="module")
def mmod_bytes() -> bytes:
    return weight_path(MMOD_DETECTOR).read_bytes()


# --- primitives ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\x01\x00", 0),
        (b"\x01\x7f", 127),
        (b"\x02\x01\x01", 257),
        (b"\x82\x01\x01", -257),
        (b"\x08" + (2**63 - 1).to_bytes(8, "little"), 2**63 - 1),
    ],
)
def test_integer_encoding(raw: bytes, value: int) -> None:
    r = DatReader(raw)
    assert r.integer() == value
    r.expect_end()


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\x01\x03\x81\x01", 1.5),  # 3 · 2^-1
        (b"\x81\x05\x01\x00", -5.0),  # -5 · 2^0
        (b"\x01\x00\x02\x00\x7d", math.inf),  # exponent 32000
        (b"\x01\x00\x02\x01\x7d", -math.inf),  # exponent 32001
    ],
)
def test_float_encoding(raw: bytes, value: float) -> None:
    assert DatReader(raw).real() == value


def test_nan_float_and_bool_and_string() -> None:
    assert math.isnan(DatReader(b"\x01\x00\x02\x02\x7d").real())
    r = DatReader(b"10\x01\x03abc")
    assert (r.boolean(), r.boolean(), r.string()) == (True, False, "abc")


def test_tensor_and_shape_encoding() -> None:
    data = np.arange(6, dtype="<f4")
    dims = b"".join(b"\x01" + bytes([d]) for d in (1, 2, 3, 1))
    r = DatReader(b"\x01\x02" + dims + data.tobytes() + b"\x01\x01" + dims)
    np.testing.assert_array_equal(r.tensor(), data.reshape(1, 2, 3, 1))
    assert r.shape() == (1, 2, 3, 1)
    r.expect_end()


def test_implausible_dimensions_are_refused_with_their_offset() -> None:
    """A fuzz finding: dimensions (0, 2^40, 2^40, 1) hold no data to cut short, and numpy could not
    even describe the array; refused like every other malformed record."""
    huge = b"\x06" + (1 << 40).to_bytes(6, "little")
    for dims in (b"\x01\x00" + huge + huge + b"\x01\x01", b"\x01\x01" + b"\x04" + (1 << 25).to_bytes(4, "little")
                 + b"\x01\x01\x01\x01"):
        with pytest.raises(DatFormatError, match="implausible dimensions.*byte"):
            DatReader(b"\x01\x02" + dims).tensor()
    with pytest.raises(DatFormatError, match="implausible dimensions"):
        DatReader(b"\x01\x01" + b"\x01\x00" + huge + huge + b"\x01\x01").shape()


# --- the real files -----------------------------------------------------------------------------


def test_resnet_file_is_read_to_the_last_byte(resnet_bytes: bytes) -> None:
    net = parse_network_bytes(resnet_bytes)  # raises unless every byte is consumed
    assert net.size == len(resnet_bytes)
    assert net.loss.tag == "loss_metric_2"
    assert net.loss.fields["distance_threshold"] == pytest.approx(0.6)
    assert net.input.fields["size"] == (150, 150)
    assert net.input.fields["mean_rgb"] == pytest.approx((122.782, 117.001, 104.298))
    assert net.num_params == 5_607_488
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds[-1] == "fc"
    convs = [layer.fields for layer in net.layers if layer.kind == "con"]
    stride2 = [f["padding"] for f in convs if f["stride"] == (2, 2)]
    assert len(stride2) == 5 and all(p == (0, 0) for p in stride2)  # dlib does not pad stride-2 convs
    assert net.layers[-1].arrays["weight"].shape == (256, 128)  # stored inputs × outputs
    assert all(a.dtype == np.float32 for layer in net.layers for a in layer.arrays.values())


def test_detector_file_is_read_to_the_last_byte(mmod_bytes: bytes) -> None:
    net = parse_network(weight_path(MMOD_DETECTOR))
    assert net.size == len(mmod_bytes)
    assert net.loss.tag == "loss_mmod_"
    assert net.loss.fields["windows"] == [(80, 80, "")]
    assert net.loss.fields["nms_iou"] == pytest.approx(0.338, abs=1e-3)
    assert net.input.fields["padding"] == 10 and net.input.fields["outer_padding"] == 11
    assert [layer.kind for layer in net.layers].count("bn_con") == 6
    assert all(layer.fields["eps"] == pytest.approx(1e-4) for layer in net.layers if layer.kind == "bn_con")
    assert net.wrappers[-1] == 3 and set(net.wrappers[:-1]) == {2}


# --- malformed input: always DatFormatError, with a message saying what and where ------------


def _assert_clear_error(data: bytes, *fragments: str) -> DatFormatError:
    with pytest.raises(DatFormatError) as info:
        parse_network_bytes(data, source="sample.dat")
    message = str(info.value)
    assert "sample.dat" in message and "byte" in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, ValueError)
    return info.value


@pytest.mark.parametrize("fraction", [0.0001, 0.01, 0.3, 0.5, 0.9, 0.999])
def test_truncated_detector_file(mmod_bytes: bytes, fraction: float) -> None:
    _assert_clear_error(mmod_bytes[: int(len(mmod_bytes) * fraction)], "truncated")


def test_truncated_resnet_file(resnet_bytes: bytes) -> None:
    _assert_clear_error(resnet_bytes[: len(resnet_bytes) // 2], "truncated", "while reading")
    _assert_clear_error(resnet_bytes[:-1], "truncated")


def test_every_cut_of_the_header_is_a_clean_error(mmod_bytes: bytes) -> None:
    # Every prefix of the first records (loss, wrapper run, input, first conv header) must fail
    # with DatFormatError, never an IndexError or struct error from half-read primitives.
    for cut in range(0, 400):
        with pytest.raises(DatFormatError):
            parse_network_bytes(mmod_bytes[:cut])


def test_trailing_garbage(mmod_bytes: bytes) -> None:
    _assert_clear_error(mmod_bytes + b"\x00", "trailing")
    _assert_clear_error(mmod_bytes + mmod_bytes[:100], "trailing")


def test_empty_file() -> None:
    _assert_clear_error(b"", "empty")


def test_jpeg_is_refused() -> None:
    jpeg = (DATA / "people" / "test" / "obama1.jpg").read_bytes()
    _assert_clear_error(jpeg, "control byte 0xff")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_refused(seed: int) -> None:
    noise = np.random.default_rng(seed).integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    _assert_clear_error(noise)


def test_unknown_layer_record(mmod_bytes: bytes) -> None:
    at = mmod_bytes.index(b"relu_")
    _assert_clear_error(mmod_bytes[:at] + b"relu?" + mmod_bytes[at + 5 :], "unknown", "relu?")


def test_wrong_file_kind_for_the_builders(resnet_bytes: bytes, mmod_bytes: bytes) -> None:
    pytest.importorskip("torch")
    from face_engine.port.mmod import build_detector
    from face_engine.port.resnet import build_resnet

    with pytest.raises(DatFormatError, match="recognition network"):
        build_resnet(parse_network_bytes(mmod_bytes))
    with pytest.raises(DatFormatError):
        build_detector(parse_network_bytes(resnet_bytes))
