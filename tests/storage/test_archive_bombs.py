"""Archive bombs, made at test time: refused while unpacking, nothing past a cap on disk.

A 1 GiB run of zeros deflates to ~1 MB. Compressing it takes seconds, so the bombs are built
from one compressed MiB repeated: after a full flush a deflate block does not refer to earlier
data, so the same bytes, repeated, are a valid stream of as many MiB of zeros.
"""

from __future__ import annotations

import io
import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from modelshelf.errors import StorageError, UnsafeArchiveError
from modelshelf.storage import _archive, download

MIB = 1 << 20
GIB = 1 << 30


def _deflated_zeros(mebibytes: int, head: bytes = b"", tail_zeros: int = 0) -> tuple[bytes, int]:
    """A raw deflate stream of ``head`` + ``mebibytes`` MiB of zeros + ``tail_zeros`` zeros, and
    its CRC-32."""

    def block(data: bytes) -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(data) + packer.flush(zlib.Z_FULL_FLUSH)

    zeros = bytes(MIB)
    crc = zlib.crc32(head)
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(tail_zeros), crc)
    stream = b"".join(
        [
            block(head) if head else b"",
            block(zeros) * mebibytes,
            block(bytes(tail_zeros)) if tail_zeros else b"",
            b"\x03\x00",  # an empty final block
        ]
    )
    return stream, crc


def tar_gz_bomb(path: Path, mebibytes: int) -> Path:
    """``path``: a tar.gz holding one file of ``mebibytes`` MiB of zeros."""
    info = tarfile.TarInfo("model.bin")
    info.size = mebibytes * MIB
    header = info.tobuf(tarfile.GNU_FORMAT)
    stream, crc = _deflated_zeros(mebibytes, head=header, tail_zeros=2 * tarfile.BLOCKSIZE)
    size = len(header) + mebibytes * MIB + 2 * tarfile.BLOCKSIZE
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    path.write_bytes(gzip_header + stream + struct.pack("<II", crc, size & 0xFFFFFFFF))
    return path


def zip_bomb(path: Path, mebibytes: int) -> Path:
    """``path``: a zip holding one deflated file of ``mebibytes`` MiB of zeros."""
    stream, crc = _deflated_zeros(mebibytes)
    name = b"model.bin"
    size = mebibytes * MIB
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(stream),
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    directory = central + name
    offset = len(local) + len(name) + len(stream)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), offset, 0)
    path.write_bytes(local + name + stream + directory + end)
    return path


def many_entries(path: Path, count: int) -> Path:
    """An archive (by suffix: tar.gz or zip) of ``count`` one-byte files."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as bundle:
            for index in range(count):
                bundle.writestr(f"f/{index}", b"x")
        return path
    with tarfile.open(path, "w:gz") as tar:
        for index in range(count):
            info = tarfile.TarInfo(f"f/{index}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return path


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_the_bombs_are_what_they_claim(tmp_path):
    """The builders are right: a 4 MiB bomb of each kind unpacks, by the libraries, to zeros."""
    with tarfile.open(tar_gz_bomb(tmp_path / "b.tar.gz", 4)) as tar:
        (member,) = tar.getmembers()
        data = tar.extractfile(member).read()
    assert data == bytes(4 * MIB)
    with zipfile.ZipFile(zip_bomb(tmp_path / "b.zip", 4)) as bundle:
        assert bundle.read("model.bin") == bytes(4 * MIB)


@pytest.mark.parametrize("make", [tar_gz_bomb, zip_bomb], ids=["tar.gz", "zip"])
def test_a_1_mb_archive_of_1_gib_is_refused_with_the_defaults_and_writes_nothing(
    make, tmp_path, monkeypatch
):
    for name in ("MAX_BYTES", "MAX_FILES", "MAX_RATIO"):
        monkeypatch.delenv(f"MODELSHELF_ARCHIVE_{name}", raising=False)
    suffix = ".tar.gz" if make is tar_gz_bomb else ".zip"
    bomb = make(tmp_path / f"bomb{suffix}", 1024)
    assert bomb.stat().st_size < 1.1 * MIB
    out = tmp_path / "out"
    out.mkdir()
    started = time.monotonic()
    with pytest.raises(UnsafeArchiveError, match="MODELSHELF_ARCHIVE_MAX_RATIO"):
        _archive.extract("s3://bucket/bomb", bomb, out)
    seconds = time.monotonic() - started
    assert disk_bytes(out) == 0  # the entry's declared size is refused before a byte is written
    assert seconds < 10, seconds


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_nothing_past_a_low_byte_cap_is_written(suffix, tmp_path, monkeypatch):
    """Bytes are counted as they are written too (a zip may understate its sizes): a cap of
    3 MiB stops a 16 MiB entry with at most the cap on disk."""
    monkeypatch.setenv("MODELSHELF_ARCHIVE_MAX_BYTES", str(3 * MIB))
    bomb = (tar_gz_bomb if suffix == ".tar.gz" else zip_bomb)(tmp_path / f"b{suffix}", 16)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError, match="MODELSHELF_ARCHIVE_MAX_BYTES"):
        _archive.extract("gs://bucket/b", bomb, out)
    assert disk_bytes(out) <= 3 * MIB


def test_a_zip_that_understates_its_size_is_stopped_at_the_cap(tmp_path, monkeypatch):
    """The central directory says 1 MiB, the data inflates to 16 MiB: refused, and the disk
    holds no more than the cap."""
    monkeypatch.setenv("MODELSHELF_ARCHIVE_MAX_BYTES", str(2 * MIB))
    bomb = zip_bomb(tmp_path / "liar.zip", 16)
    data = bytearray(bomb.read_bytes())
    declared = struct.pack("<I", 16 * MIB)
    data = data.replace(declared, struct.pack("<I", MIB))  # local header and directory
    bomb.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(StorageError, match=r"cannot download s3://bucket/liar\.zip: "):
        _archive.extract("s3://bucket/liar.zip", bomb, out)  # the cap, or zipfile's CRC check
    assert disk_bytes(out) <= 2 * MIB


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_too_many_entries_are_refused_while_unpacking(suffix, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSHELF_ARCHIVE_MAX_FILES", "500")
    archive = many_entries(tmp_path / f"many{suffix}", 2000)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError, match="more than 500 entries"):
        _archive.extract("s3://bucket/many", archive, out)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) <= 500
    if suffix == ".zip":
        assert written == []  # the central directory lists them all: refused before writing


def test_a_bomb_downloaded_over_http_leaves_nothing_in_the_cache(env, tmp_path):
    """Through ``download()``: the refusal is the one-line error and the staging folder goes."""
    from faulty import Route, lying_http_server

    env({"MODELSHELF_ARCHIVE_MAX_BYTES": str(4 * MIB)})
    bomb = tar_gz_bomb(tmp_path / "bomb.tar.gz", 64).read_bytes()
    with (
        lying_http_server({"/m/model.tar.gz": Route(bomb)}) as server,
        pytest.raises(UnsafeArchiveError) as caught,
    ):
        download(f"{server.url}/m/model.tar.gz")
    assert str(caught.value).startswith(f"cannot download {server.url}/m/model.tar.gz: ")
    assert "\n" not in str(caught.value)
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files == []  # no model bytes, and no lock file left behind
