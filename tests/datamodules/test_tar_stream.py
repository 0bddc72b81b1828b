"""The fast tar reader agrees with Python's tarfile and refuses damage instead of stopping early."""

import io
import tarfile

import pytest

from datamodules.tar_stream import TarFormatError, iter_members, iter_samples


def make_tar(members, fmt=tarfile.USTAR_FORMAT):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


MEMBERS = [("a-000.CAM_FRONT.000.jpg", b"x" * 700), ("a-000.meta.json", b"{}"),
           ("a-001.CAM_FRONT.000.jpg", b""), ("a-001.meta.json", b"[1]" * 300)]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_match_tarfile_in_every_format(fmt):
    long_name = "d/" + "k" * 120 + ".meta.json"  # needs a GNU or pax long-name header
    members = MEMBERS + ([(long_name, b"long")] if fmt != tarfile.USTAR_FORMAT else [])
    data = make_tar(members, fmt)
    assert list(iter_members(io.BytesIO(data))) == members


def test_samples_group_by_key_and_keep_suffix_case():
    samples = list(iter_samples(io.BytesIO(make_tar(MEMBERS))))
    assert [s["__key__"] for s in samples] == ["a-000", "a-001"]
    assert samples[0]["CAM_FRONT.000.jpg"] == b"x" * 700 and samples[1]["meta.json"] == b"[1]" * 300


def test_damaged_header_and_truncation_are_errors():
    data = bytearray(make_tar(MEMBERS))
    second_header = 512 + 1024  # after the first header and its 700 bytes of data (2 blocks)
    data[second_header + 10] ^= 0xFF
    with pytest.raises(TarFormatError, match="checksum"):
        list(iter_members(io.BytesIO(bytes(data))))
    with pytest.raises(TarFormatError, match="unexpected end of data"):
        list(iter_members(io.BytesIO(make_tar(MEMBERS)[:1000])))
