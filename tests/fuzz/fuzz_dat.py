"""Fuzz the dlib ``.dat`` network reader the port uses (face_engine/port/dat_format.py) and the
readers that map its records onto the detector and the ResNet: every input parses, or is refused
with DatFormatError (a message naming the byte offset); nothing else may escape.

Inputs are of two kinds, chosen by the first byte: raw bytes (whatever libFuzzer makes of the
seeds), or a list of byte patches and a cut applied to the shipped detector file, which keeps
most of a real file intact and so reaches the records deep inside it."""

from __future__ import annotations

import _common  # noqa: F401 - the repository on sys.path
import atheris

with atheris.instrument_imports(include=["face_engine.port"]):
    from face_engine.port.dat_format import DatFormatError, parse_network_bytes
    from face_engine.port.mmod import read_mmod_net
    from face_engine.port.resnet import read_resnet
    from face_engine.weights import MMOD_DETECTOR, weight_path

DETECTOR = weight_path(MMOD_DETECTOR).read_bytes()  # 730 KB; the ResNet's 22 MB only slow each run


def _patched(data: bytes) -> bytes:
    fdp = atheris.FuzzedDataProvider(data)
    body = bytearray(DETECTOR)
    for _ in range(fdp.ConsumeIntInRange(0, 16)):
        at = fdp.ConsumeIntInRange(0, len(body) - 1)
        body[at] = fdp.ConsumeInt(1) & 0xFF
    cut = fdp.ConsumeIntInRange(0, len(body) + 8)
    return bytes(body[:cut]) + fdp.ConsumeBytes(8) if cut < len(body) else bytes(body)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    body = _patched(data[1:]) if data[0] & 1 else data[1:]
    try:
        net = parse_network_bytes(body, source="fuzz")
    except DatFormatError as exc:
        if "byte" not in str(exc):
            raise _common.Finding(f"refusal without an offset: {exc}") from exc
        return
    for read in (read_mmod_net, read_resnet):  # a parsed file of the wrong architecture is refused
        try:
            read(net)
        except DatFormatError:
            pass


def seeds() -> list[bytes]:
    small = [DETECTOR[:n] for n in (1, 2, 16, 64, 512, 4096)]
    return [b"\x01", b"\x01" + bytes(8), b"\x00" + DETECTOR, *(b"\x00" + s for s in small)]


if __name__ == "__main__":
    _common.run(test_one_input, seeds())
