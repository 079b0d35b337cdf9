"""Reader for dlib's binary ``.dat`` serialization of DNN models.

Written from the format description in ``docs/dlib-models.md`` (shared docs) and checked against
the two networks shipped by ``face_recognition_models``. The parser walks the *whole* file and
insists on ending exactly at the last byte: a network whose records we misread would otherwise
load silently with shifted weights, which is the worst kind of failure for a port.

Every malformed input (truncated file, foreign file, trailing bytes, unknown record) raises
:class:`DatFormatError` naming what was being read and at which byte offset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DatFormatError",
    "DatReader",
    "LayerRecord",
    "NetworkFile",
    "parse_network",
    "parse_network_bytes",
]

# dlib writes inf / -inf / NaN as these reserved exponents of its mantissa/exponent float format.
_EXP_POS_INF, _EXP_NEG_INF, _EXP_NAN = 32000, 32001, 32002
# Generous upper bound on a tag or label string: anything longer means we are reading garbage.
_MAX_STRING = 4096
# Generous upper bound on one tensor dimension (dlib's networks stay under 10^4). Beyond it numpy
# could not even describe the array: a zero dimension beside two of 2^40 holds no data to cut short
# and reshape would fail with numpy's own error (a fuzz finding).
_MAX_DIM = 1 << 24


class DatFormatError(ValueError):
    """The bytes are not a dlib network file of a kind this reader understands."""


class DatReader:
    """Sequential reader for dlib's primitive encodings, with offsets in every error message."""

    def __init__(self, data: bytes, *, source: str = "<bytes>") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.source = source
        self._context: list[str] = []

    # -- error reporting -------------------------------------------------------------------
    def error(self, message: str, *, at: int | None = None) -> DatFormatError:
        where = f"byte {self.pos if at is None else at} of {len(self.data)}"
        trail = f" (while reading {' > '.join(self._context)})" if self._context else ""
        return DatFormatError(f"{self.source}: {message} at {where}{trail}")

    def push(self, what: str) -> None:
        self._context.append(what)

    def pop(self) -> None:
        self._context.pop()

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int, what: str) -> memoryview:
        if n > self.remaining:
            raise self.error(f"file is truncated: {what} needs {n} bytes but only {self.remaining} remain")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    # -- primitives -------------------------------------------------------------------------
    def integer(self, what: str = "integer", *, max_bytes: int = 8) -> int:
        """Control byte (low nibble = payload length, 0x80 = negative), then little-endian bytes."""
        start = self.pos
        control = self._take(1, what)[0]
        size = control & 0x0F
        # Bits 0x70 are never set by dlib; seeing them means this is not dlib data.
        if control & 0x70 or size == 0 or size > max_bytes:
            raise self.error(f"invalid control byte 0x{control:02x} for {what}", at=start)
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def unsigned(self, what: str = "unsigned integer") -> int:
        start = self.pos
        value = self.integer(what)
        if value < 0:
            raise self.error(f"{what} is negative ({value})", at=start)
        return value

    def real(self, what: str = "float") -> float:
        """dlib's portable float: int64 mantissa m, int16 exponent e, value m·2^e."""
        start = self.pos
        if self.remaining and self.data[self.pos] & 0x70:
            raise self.error(f"{what} uses dlib's old text float encoding (unsupported)", at=start)
        mantissa = self.integer(f"{what} mantissa")
        exponent = self.integer(f"{what} exponent", max_bytes=2)
        if exponent == _EXP_POS_INF:
            return math.inf
        if exponent == _EXP_NEG_INF:
            return -math.inf
        if exponent == _EXP_NAN:
            return math.nan
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError as exc:
            raise self.error(f"{what} overflows ({mantissa}·2^{exponent})", at=start) from exc

    def boolean(self, what: str = "bool") -> bool:
        start = self.pos
        byte = self._take(1, what)[0]
        if byte not in (0x30, 0x31):
            raise self.error(f"{what} must be the byte '0' or '1', found 0x{byte:02x}", at=start)
        return byte == 0x31

    def byte(self, what: str = "byte") -> int:
        return int(self._take(1, what)[0])

    def string(self, what: str = "string") -> str:
        start = self.pos
        length = self.unsigned(f"{what} length")
        if length > _MAX_STRING:
            raise self.error(f"{what} length {length} is implausible", at=start)
        raw = bytes(self._take(length, what))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.error(f"{what} is not ASCII: {raw[:32]!r}", at=start) from exc

    def _dims(self, what: str) -> tuple[int, int, int, int]:
        dims = tuple(self.integer(f"{what} dimension") for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.error(f"{what} has negative dimensions {dims}")
        if any(d > _MAX_DIM for d in dims):
            raise self.error(f"{what} has implausible dimensions {dims}")
        return dims  # type: ignore[return-value]

    def tensor(self, what: str = "tensor") -> np.ndarray:
        """A resizable_tensor: version 2, (n, k, rows, cols), then raw little-endian float32."""
        start = self.pos
        version = self.integer(f"{what} version")
        if version != 2:
            raise self.error(f"{what} has version {version}, expected 2", at=start)
        dims = self._dims(what)
        count = math.prod(dims)
        raw = self._take(4 * count, f"{what} data ({count} floats)")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def shape(self, what: str = "tensor shape") -> tuple[int, int, int, int]:
        """An alias_tensor: version 1 and four dimensions, no data."""
        start = self.pos
        version = self.integer(f"{what} version")
        if version != 1:
            raise self.error(f"{what} has version {version}, expected 1", at=start)
        return self._dims(what)

    def expect_end(self) -> None:
        if self.remaining:
            raise self.error(f"{self.remaining} unexpected trailing bytes after the network")


@dataclass(frozen=True)
class LayerRecord:
    """One serialized layer: its tag, scalar fields and float32 parameter arrays."""

    tag: str
    offset: int
    fields: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The tag without its version suffix (``con_4`` → ``con``, ``bn_con2`` → ``bn_con``)."""
        return self.tag.rstrip("_0123456789")

    @property
    def num_params(self) -> int:
        """Learnable parameters, counted like dlib's ``count_parameters``.

        dlib's ``affine_`` layer is a frozen inference-time stand-in for batch norm, so its
        gamma/beta are not counted; convolution, fully connected and batch-norm layers are.
        """
        if self.kind == "affine":
            return 0
        return sum(int(a.size) for name, a in self.arrays.items() if name in _TRAINABLE)


_TRAINABLE = frozenset({"weight", "bias", "gamma", "beta"})


@dataclass(frozen=True)
class NetworkFile:
    """A whole network file: loss record, wrapper versions, input record, computational layers.

    ``wrappers`` lists the layer-wrapper versions from the output side inwards (2: computational
    layer, 1: tag or skip layer, 3: innermost computational layer holding the input layer);
    ``layers`` are the computational layers from input to output, the order they run in.
    """

    loss: LayerRecord
    wrappers: tuple[int, ...]
    input: LayerRecord
    layers: tuple[LayerRecord, ...]
    size: int

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)


# --- layer records ------------------------------------------------------------------------

_Fields = tuple[dict[str, Any], dict[str, np.ndarray]]  # a record's scalar fields and arrays


def _multipliers(r: DatReader, out: dict[str, Any]) -> None:
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        out[name] = r.real(name)


def _split(r: DatReader, params: np.ndarray, parts: list[tuple[str, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    flat = params.reshape(-1)
    need = sum(math.prod(shape) for _, shape in parts)
    if need != flat.size:
        raise r.error(f"params tensor holds {flat.size} floats, its shapes need {need}")
    arrays: dict[str, np.ndarray] = {}
    at = 0
    for name, shape in parts:
        n = math.prod(shape)
        arrays[name] = flat[at : at + n].reshape(shape).copy()
        at += n
    return arrays


def _con(r: DatReader, tag: str) -> _Fields:
    params = r.tensor("params")
    f: dict[str, Any] = {"num_filters": r.integer("num_filters")}
    f["kernel"] = (r.integer("rows"), r.integer("cols"))
    f["stride"] = (r.integer("stride y"), r.integer("stride x"))
    f["padding"] = (r.integer("padding y"), r.integer("padding x"))
    filters, biases = r.shape("filters shape"), r.shape("biases shape")
    _multipliers(r, f)
    f["use_bias"] = r.boolean("use_bias") if tag in ("con_5", "con_6") else True
    f["use_relu"] = r.boolean("use_relu") if tag == "con_6" else False
    if filters[0] != f["num_filters"] or filters[2:] != f["kernel"]:
        raise r.error(f"filters shape {filters} disagrees with the layer's fields")
    parts: list[tuple[str, tuple[int, ...]]] = [("weight", filters)]
    if params.size > math.prod(filters):
        parts.append(("bias", (biases[1] * biases[0],)))
    return f, _split(r, params, parts)


def _affine(r: DatReader, tag: str) -> _Fields:
    params = r.tensor("params")
    gamma, beta = r.shape("gamma shape"), r.shape("beta shape")
    f: dict[str, Any] = {"mode": r.integer("mode")}
    f["disabled"] = r.boolean("disabled") if tag == "affine_2" else False
    return f, _split(r, params, [("gamma", (math.prod(gamma),)), ("beta", (math.prod(beta),))])


def _bn(r: DatReader, tag: str) -> _Fields:
    params = r.tensor("params")
    gamma, beta = r.shape("gamma shape"), r.shape("beta shape")
    arrays = _split(r, params, [("gamma", (math.prod(gamma),)), ("beta", (math.prod(beta),))])
    for name in ("means", "invstds", "running_means", "running_variances"):
        arrays[name] = r.tensor(name).reshape(-1)
    f: dict[str, Any] = {
        "num_updates": r.unsigned("num_updates"),
        "running_stats_window": r.unsigned("running_stats_window_size"),
    }
    _multipliers(r, f)
    f["eps"] = r.real("eps")
    return f, arrays


def _pool(r: DatReader, tag: str) -> _Fields:
    f: dict[str, Any] = {"kernel": (r.integer("rows"), r.integer("cols"))}
    f["stride"] = (r.integer("stride y"), r.integer("stride x"))
    f["padding"] = (r.integer("padding y"), r.integer("padding x"))
    return f, {}


def _fc(r: DatReader, tag: str) -> _Fields:
    f: dict[str, Any] = {"num_outputs": r.unsigned("num_outputs")}
    f["num_inputs"] = r.unsigned("num_inputs")
    params = r.tensor("params")
    weights, biases = r.shape("weights shape"), r.shape("biases shape")
    f["bias_mode"] = r.integer("bias mode")
    _multipliers(r, f)
    f["use_bias"] = r.boolean("use_bias") if tag == "fc_3" else f["bias_mode"] == 0
    # dlib stores the matrix inputs × outputs (it computes x·W), the transpose of torch's Linear.
    parts: list[tuple[str, tuple[int, ...]]] = [("weight", (f["num_inputs"], f["num_outputs"]))]
    if params.size > f["num_inputs"] * f["num_outputs"]:
        parts.append(("bias", (f["num_outputs"],)))
    del weights, biases
    return f, _split(r, params, parts)


def _relu(r: DatReader, tag: str) -> _Fields:
    return {"disabled": r.boolean("disabled") if tag == "relu_2" else False}, {}


def _nothing(r: DatReader, tag: str) -> _Fields:
    return {}, {}


def _input_sized(r: DatReader, tag: str) -> _Fields:
    f: dict[str, Any] = {"mean_rgb": tuple(r.real(c) for c in ("red mean", "green mean", "blue mean"))}
    f["size"] = (r.unsigned("rows"), r.unsigned("cols"))
    return f, {}


def _input_pyramid(r: DatReader, tag: str) -> _Fields:
    f: dict[str, Any] = {"mean_rgb": tuple(r.real(c) for c in ("red mean", "green mean", "blue mean"))}
    if tag == "input_rgb_image_pyramid2":
        f["padding"], f["outer_padding"] = r.unsigned("padding"), r.unsigned("outer padding")
    else:  # the first version of the record hard-coded these values
        f["padding"], f["outer_padding"] = 10, 11
    return f, {}


def _loss_metric(r: DatReader, tag: str) -> _Fields:
    if tag == "loss_metric_":
        return {"margin": 0.1, "distance_threshold": 0.75}, {}
    return {"margin": r.real("margin"), "distance_threshold": r.real("distance threshold")}, {}


def _loss_mmod(r: DatReader, tag: str) -> _Fields:
    start = r.pos
    version = r.integer("mmod options version")
    if not 1 <= version <= 4:
        raise r.error(f"mmod options version {version} is unknown", at=start)
    windows: list[tuple[int, int, str]] = []
    if version == 1:
        windows.append((r.unsigned("window width"), r.unsigned("window height"), ""))
    else:
        for _ in range(r.unsigned("window count")):
            wv = r.integer("window version")
            if wv not in (1, 2):
                raise r.error(f"detector window version {wv} is unknown")
            w, h = r.unsigned("window width"), r.unsigned("window height")
            windows.append((w, h, r.string("window label") if wv == 2 else ""))
    f: dict[str, Any] = {"version": version, "windows": windows}
    f["loss_per_false_alarm"] = r.real("loss per false alarm")
    f["loss_per_missed_target"] = r.real("loss per missed target")
    f["truth_match_iou"] = r.real("truth match IoU")
    f["nms_iou"], f["nms_covered"] = r.real("NMS IoU"), r.real("NMS coverage")
    f["ignore_iou"], f["ignore_covered"] = r.real("ignore IoU"), r.real("ignore coverage")
    f["assume_image_pyramid"] = r.byte("assume_image_pyramid") if version >= 3 else 1
    f["use_bbr"], f["bbr_lambda"] = False, None
    if version >= 4:
        f["use_bbr"], f["bbr_lambda"] = r.boolean("use_bbr"), r.real("bbr lambda")
    return f, {}


_Parser = Callable[[DatReader, str], _Fields]
_COMPUTATIONAL: dict[str, _Parser] = {
    "con_4": _con, "con_5": _con, "con_6": _con,
    "affine_": _affine, "affine_2": _affine,
    "bn_con2": _bn, "bn_fc2": _bn,
    "relu_": _relu, "relu_2": _relu,
    "max_pool_2": _pool, "avg_pool_2": _pool,
    "add_prev_": _nothing,
    "fc_2": _fc, "fc_3": _fc,
}  # fmt: skip
_INPUTS: dict[str, _Parser] = {
    "input_rgb_image_sized": _input_sized,
    "input_rgb_image_pyramid": _input_pyramid,
    "input_rgb_image_pyramid2": _input_pyramid,
}
_LOSSES: dict[str, _Parser] = {
    "loss_metric_": _loss_metric,
    "loss_metric_2": _loss_metric,
    "loss_mmod_": _loss_mmod,
}


def _record(r: DatReader, parsers: dict[str, _Parser], role: str) -> LayerRecord:
    start = r.pos
    tag = r.string(f"{role} tag")
    parser = parsers.get(tag)
    if parser is None:
        raise r.error(f"unknown {role} record {tag[:40]!r}", at=start)
    r.push(f"{role} {tag!r} at byte {start}")
    try:
        fields, arrays = parser(r, tag)
    finally:
        r.pop()
    return LayerRecord(tag=tag, offset=start, fields=fields, arrays=arrays)


def _layer_state(r: DatReader, innermost: bool) -> None:
    """The training state dlib writes after each layer; empty in shipped models, so discarded."""
    for name in ("this_layer_setup_called", "gradient_input_is_stale", "output_disabled"):
        r.boolean(name)
    for name in ("x_grad", "cached_output", "grad_final" if innermost else "params_grad"):
        r.tensor(name)
    if innermost:
        r.unsigned("sample expansion factor")


def parse_network_bytes(data: bytes, *, source: str = "<bytes>") -> NetworkFile:
    """Parse a complete dlib DNN file (loss wrapper + layers); every byte must be accounted for."""
    r = DatReader(data, source=source)
    if not data:
        raise r.error("file is empty")
    try:
        version = r.integer("loss wrapper version")
    except DatFormatError as exc:
        raise DatFormatError(f"not a dlib network file: {exc}") from None
    if version != 1:
        raise r.error(f"not a dlib network file: loss wrapper version is {version}, expected 1")
    loss = _record(r, _LOSSES, "loss")

    # Wrappers serialize their version, then recurse inwards before writing their own record:
    # so a run of versions comes first, ending with 3 at the layer that holds the input.
    wrappers: list[int] = []
    while True:
        start = r.pos
        v = r.integer("layer wrapper version")
        if v not in (1, 2, 3):
            raise r.error(f"layer wrapper version {v} is unknown", at=start)
        wrappers.append(v)
        if v == 3:
            break
    n_computational = sum(1 for v in wrappers if v in (2, 3))

    inp = _record(r, _INPUTS, "input")
    layers: list[LayerRecord] = []
    for i in range(n_computational):
        layer = _record(r, _COMPUTATIONAL, f"layer {i}")
        r.push(f"state of layer {i} {layer.tag!r}")
        try:
            _layer_state(r, innermost=i == 0)
        finally:
            r.pop()
        layers.append(layer)
    r.expect_end()
    return NetworkFile(loss, tuple(wrappers), inp, tuple(layers), size=len(data))


def parse_network(path: str | Path) -> NetworkFile:
    path = Path(path)
    return parse_network_bytes(path.read_bytes(), source=path.name)
