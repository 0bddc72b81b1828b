"""A streaming reader of WebDataset tar shards, for the loader's hot path.

Python's `tarfile` spends about 90 us per member parsing headers; a sample holds ~100
members (one JPEG per camera per step), so that was half of the loader's time (see
benchmarks/README.md). This reader parses the 512-byte ustar header directly (name, size,
type, checksum), understands the pax and GNU long-name extensions other writers use, and
turns every damage it sees (bad checksum, short read) into an error instead of an early end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512
_REGULAR = (b"0", b"\x00", b"7")  # regular file, old-style regular, contiguous file
_SKIPPED = (b"1", b"2", b"3", b"4", b"5", b"6", b"g")  # links, devices, dirs, fifos, global pax


class TarFormatError(ValueError):
    """The bytes are not a well-formed tar stream."""


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise TarFormatError(f"unexpected end of data ({len(data)} of {size} bytes)")
        data += more
    return data


def _octal(field: bytes) -> int:
    text = field.rstrip(b"\x00 ").strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError as error:
        raise TarFormatError(f"bad number field {field!r} in a header") from error


def _check_header(header: bytes) -> None:
    stored = _octal(header[148:156])
    computed = sum(header[:148]) + 8 * 32 + sum(header[156:])  # checksum field counted as spaces
    if stored != computed:
        raise TarFormatError(f"header checksum mismatch (stored {stored}, computed {computed})")


def _pax_path(data: bytes) -> str | None:
    """The `path` record of a pax extended header ("<len> path=<value>\\n" records)."""
    position = 0
    while position < len(data):
        length_text, _, _ = data[position:].partition(b" ")
        length = int(length_text)
        record = data[position + len(length_text) + 1 : position + length - 1]
        key, _, value = record.partition(b"=")
        if key == b"path":
            return value.decode()
        position += length
    return None


def iter_members(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, content) of each regular file of a tar stream, in order."""
    long_name: str | None = None
    while True:
        header = stream.read(BLOCK)
        if len(header) == 0:
            raise TarFormatError("unexpected end of data (no end-of-archive marker)")
        if len(header) < BLOCK:
            header += _read_exact(stream, BLOCK - len(header))
        if header == bytes(BLOCK):
            return  # end-of-archive marker (two zero blocks; the second needs no reading)
        _check_header(header)
        size = _octal(header[124:136])
        kind = header[156:157]
        data = _read_exact(stream, size)
        padding = -size % BLOCK
        if padding:
            _read_exact(stream, padding)
        if kind == b"x":
            long_name = _pax_path(data) or long_name
        elif kind == b"L":
            long_name = data.rstrip(b"\x00").decode()
        elif kind in _REGULAR:
            prefix = header[345:500].rstrip(b"\x00").decode()
            name = header[:100].rstrip(b"\x00").decode()
            name = long_name or (f"{prefix}/{name}" if prefix else name)
            long_name = None
            yield name, data
        elif kind in _SKIPPED:
            long_name = None
        else:
            raise TarFormatError(f"unsupported tar member type {kind!r}")


def iter_samples(stream: BinaryIO) -> Iterator[dict[str, bytes]]:
    """WebDataset samples: consecutive members sharing the key before the first dot of the
    file name, as {"__key__": key, "<suffix>": bytes} (suffix case kept: CAM_FRONT stays)."""
    sample: dict = {}
    for name, data in iter_members(stream):
        directory, _, base = name.rpartition("/")
        stem, dot, suffix = base.partition(".")
        if not dot:
            continue
        key = f"{directory}/{stem}" if directory else stem
        if sample and sample["__key__"] != key:
            yield sample
            sample = {}
        if not sample:
            sample = {"__key__": key}
        if suffix in sample:
            raise TarFormatError(f"{name}: member appears twice in the same sample")
        sample[suffix] = data
    if sample:
        yield sample
