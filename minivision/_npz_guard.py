"""Reading an untrusted ``.npz`` archive: every size is checked before any data is read.

An ``.npz`` is a zip of ``.npy`` files. A small archive can expand to gigabytes (a zip
bomb), and an ``.npy`` header can declare any shape, which NumPy allocates before reading.
So ``read_npz`` first reads the zip's directory and each entry's ``.npy`` header (a few
hundred bytes each), checks that every header's size is exactly what its entry holds and
that the whole archive stays under a limit, and only then reads the arrays.
"""

from __future__ import annotations

import lzma
import math
import os
import zipfile
import zlib

import numpy as np

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip
_OTHER_FORMATS = {  # what a file that is not a zip archive often is, by its first bytes
    b"\x93NUMPY": "it is a .npy array file, not a .npz archive (load it with numpy.load)",
    b"\x89PNG\r\n\x1a\n": "it is a PNG image, not a .npz archive",
    b"\xff\xd8\xff": "it is a JPEG image, not a .npz archive",
}
# what a damaged archive raises from inside zipfile and its decompressors
_CORRUPT = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError, NotImplementedError)


def _unreadable(path, reason: str) -> ValueError:
    return ValueError(f"load: {path!r} is not a readable minivision .npz file: {reason}")


def read_npz(path: str, max_bytes: int) -> list[tuple[str, np.ndarray]]:
    """The archive's (name, array) pairs in order, names without ``.npy``. A file that is
    not an ``.npz`` of numeric or text arrays, or whose arrays would take more than
    ``max_bytes`` bytes, is a ValueError naming the file and the entry, raised before
    any array's data is read."""
    with open(path, "rb") as file:
        _check_signature(path, file.read(8))
        file.seek(0)
        try:
            with zipfile.ZipFile(file) as archive:
                entries, archive_size = archive.infolist(), os.fstat(file.fileno()).st_size
                sizes = [_entry_size(path, archive, entry, archive_size) for entry in entries]
                _check_total(path, entries, sizes, max_bytes)
                return [
                    (entry.filename[: -len(".npy")], _read_array(path, archive, entry))
                    for entry in entries
                ]
        except _CORRUPT as exc:
            reason = f"the zip archive is truncated, corrupt or of an unsupported kind ({type(exc).__name__}: {exc})"
            raise _unreadable(path, reason) from None


def _check_signature(path, head: bytes) -> None:
    if head.startswith(_ZIP_MAGICS):
        return
    for magic, what in _OTHER_FORMATS.items():
        if head.startswith(magic):
            raise _unreadable(path, what)
    raise _unreadable(
        path, f"it is not a zip archive (it starts with {head!r}, a .npz starts with b'PK')"
    )


def _entry_size(path, archive: zipfile.ZipFile, entry: zipfile.ZipInfo, archive_size: int) -> int:
    """Bytes the entry's array will take, from its ``.npy`` header, checked against the
    sizes the zip declares: a header or a directory that lies is refused."""
    name = entry.filename
    if not name.endswith(".npy"):
        raise _unreadable(path, f"entry {name!r} is not a .npy array")
    if entry.flag_bits & 0x1:
        raise _unreadable(path, f"entry {name!r} is encrypted")
    if entry.header_offset + entry.compress_size > archive_size or (
        entry.compress_type == zipfile.ZIP_STORED and entry.compress_size != entry.file_size
    ):
        raise _unreadable(
            path,
            f"entry {name!r} declares {entry.file_size} bytes stored in {entry.compress_size}, "
            f"which does not fit the {archive_size}-byte archive",
        )
    with archive.open(entry) as member:
        try:
            version = np.lib.format.read_magic(member)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }
            if version not in read_header:
                raise ValueError(f".npy version {version[0]}.{version[1]}, expected 1.0 or 2.0")
            shape, _, dtype = read_header[version](member)
        except ValueError as exc:
            raise _unreadable(path, f"entry {name!r} has no valid .npy header ({exc})") from None
        header_size = member.tell()
    if dtype.hasobject:
        raise _unreadable(
            path,
            f"entry {name!r} holds Python objects (dtype {dtype}); "
            "only numeric and text arrays are loaded",
        )
    size = math.prod(shape) * dtype.itemsize  # Python ints: no overflow whatever the header claims
    if size != entry.file_size - header_size:
        raise _unreadable(
            path,
            f"entry {name!r}: its header declares shape {shape} of {dtype} ({size:,} bytes), "
            f"but the entry holds {entry.file_size - header_size:,} bytes of data",
        )
    return size


def _check_total(path, entries, sizes: list[int], max_bytes: int) -> None:
    total = sum(sizes)
    if total > max_bytes:
        largest = max(range(len(entries)), key=sizes.__getitem__)
        raise ValueError(
            f"load: {path!r} would take {total:,} bytes in memory (entry {entries[largest].filename!r}: "
            f"{sizes[largest]:,}), over the limit of max_bytes={max_bytes:,}; "
            "pass a larger max_bytes to load it if you trust the file"
        )


def _read_array(path, archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> np.ndarray:
    with archive.open(entry) as member:
        try:
            return np.lib.format.read_array(member, allow_pickle=False)
        except ValueError as exc:  # data shorter than its header said
            raise _unreadable(path, f"entry {entry.filename!r} is truncated ({exc})") from None
