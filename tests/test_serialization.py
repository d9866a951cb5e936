"""mv.load on files that are not what they claim (wrong format, lying sizes, zip bombs),
and atomic_write's clean-up of temporary files left by killed writes."""

import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minivision as mv
from minivision import serialization
from minivision.serialization import atomic_write


def _npy_bytes(shape, dtype="<f8", data=b"", version=(1, 0)):
    """An .npy file whose header declares ``shape`` of ``dtype``, followed by ``data``."""
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    write = (
        np.lib.format.write_array_header_1_0
        if version == (1, 0)
        else np.lib.format.write_array_header_2_0
    )
    write(buf, header)
    return buf.getvalue() + data


def _zip(path, entries, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _refuse_reading_data(monkeypatch):
    """Make any read of array data fail the test: refusals must come from the headers alone."""

    def read_array(*args, **kwargs):
        raise AssertionError("array data was read before the archive was refused")

    monkeypatch.setattr(np.lib.format, "read_array", read_array)


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)


# --- what the file is -------------------------------------------------------------------


def test_npy_file_is_named_as_such(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(
        ValueError,
        match=r"'.*x\.npy' is not a readable minivision \.npz file: it is a \.npy array "
        r"file, not a \.npz archive \(load it with numpy\.load\)",
    ) as excinfo:
        mv.load(tmp_path / "x.npy")
    _one_line(excinfo)


def test_png_is_named_as_such(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(
        ValueError, match=r"x\.png' is not a readable minivision \.npz file: it is a PNG image"
    ):
        mv.load(tmp_path / "x.png")


def test_random_bytes_are_not_a_zip_archive(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"\x00\x01garbage and more")
    with pytest.raises(
        ValueError,
        match=r"x\.npz' is not a readable minivision \.npz file: it is not a zip archive "
        r"\(it starts with b'\\x00\\x01garbag', a .npz starts with b'PK'\)",
    ):
        mv.load(tmp_path / "x.npz")


def test_a_folder_is_not_a_file(tmp_path):
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(
        ValueError, match=r"d\.npz' is not a readable minivision \.npz file \(Is a directory\)"
    ):
        mv.load(tmp_path / "d.npz")


def test_truncated_archive(tmp_path):
    path = tmp_path / "w.npz"
    mv.save({"w": mv.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:3000])  # the zip's directory is at the end, now gone
    with pytest.raises(
        ValueError,
        match=r"w\.npz' is not a readable minivision \.npz file: the zip archive is "
        r"truncated, corrupt or of an unsupported kind \(BadZipFile",
    ) as excinfo:
        mv.load(path)
    _one_line(excinfo)


def test_corrupt_data_fails_the_zip_checksum(tmp_path):
    path = tmp_path / "w.npz"
    mv.save({"w": mv.ones(1000)}, path)
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF  # inside the array's data
    path.write_bytes(bytes(raw))
    with pytest.raises(
        ValueError, match=r"truncated, corrupt or of an unsupported kind \(BadZipFile: Bad CRC-32"
    ):
        mv.load(path)


def test_object_dtype_is_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "p.npz"
    np.savez(path, fine=np.zeros(2), bad=np.array([{"a": 1}], dtype=object))
    _refuse_reading_data(monkeypatch)
    with pytest.raises(
        ValueError,
        match=r"p\.npz' is not a readable minivision \.npz file: entry 'bad\.npy' holds "
        r"Python objects \(dtype object\)",
    ):
        mv.load(path)


def test_entry_that_is_not_an_array(tmp_path):
    path = _zip(tmp_path / "x.npz", {"w.npy": _npy_bytes((0,)), "notes.txt": b"hello"})
    with pytest.raises(ValueError, match=r"entry 'notes\.txt' is not a \.npy array"):
        mv.load(path)
    path = _zip(tmp_path / "y.npz", {"w.npy": b"hello, not an npy header"})
    with pytest.raises(ValueError, match=r"entry 'w\.npy' has no valid \.npy header"):
        mv.load(path)


# --- sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_header_claiming_a_huge_array_is_refused_before_allocating(
    tmp_path, monkeypatch, compression
):
    path = _zip(
        tmp_path / "lie.npz", {"w.npy": _npy_bytes((10**6, 10**6), data=bytes(64))}, compression
    )
    _refuse_reading_data(monkeypatch)
    with pytest.raises(
        ValueError,
        match=r"lie\.npz' is not a readable minivision \.npz file: entry 'w\.npy': its "
        r"header declares shape \(1000000, 1000000\) of float64 "
        r"\(8,000,000,000,000 bytes\), but the entry holds 64 bytes of data",
    ):
        mv.load(path)


def test_header_claiming_less_than_the_data_is_refused(tmp_path):
    path = _zip(tmp_path / "lie.npz", {"w.npy": _npy_bytes((2,), data=bytes(80))})
    with pytest.raises(
        ValueError, match=r"declares shape \(2,\) of float64 \(16 bytes\), but the entry holds 80"
    ):
        mv.load(path)


def _patch_central_directory(path, field_offset, value):
    """Overwrite one 4-byte size field of the (single) entry in the zip's central directory."""
    raw = bytearray(path.read_bytes())
    at = raw.rindex(b"PK\x01\x02") + field_offset
    raw[at : at + 4] = struct.pack("<I", value)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "field_offset, value, declared",
    [(24, 10**9, "1000000000 bytes stored in 208"), (20, 10**9, "208 bytes stored in 1000000000")],
)
def test_zip_directory_sizes_that_do_not_fit_are_refused(
    tmp_path, monkeypatch, field_offset, value, declared
):
    """24: the uncompressed size, 20: the compressed size, of a stored (uncompressed) entry."""
    path = tmp_path / "w.npz"
    np.savez(path, w=np.zeros(10))  # a 128-byte header and 80 bytes of data
    _patch_central_directory(path, field_offset, value)
    _refuse_reading_data(monkeypatch)
    with pytest.raises(
        ValueError, match=rf"entry 'w\.npy' declares {declared}, which does not fit the \d+-byte"
    ):
        mv.load(path)


def test_compressed_archive_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    """A zip bomb in miniature: 8 MB of zeros compresses to 8 kB."""
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, small=np.ones(3), big=np.zeros(10**6))
    assert path.stat().st_size < 20_000
    np.testing.assert_array_equal(
        mv.load(path, max_bytes=8_000_024)["big"].numpy(), np.zeros(10**6)
    )  # at the limit
    _refuse_reading_data(monkeypatch)
    with pytest.raises(
        ValueError,
        match=r"bomb\.npz' would take 8,000,024 bytes in memory \(entry 'big\.npy': "
        r"8,000,000\), over the limit of max_bytes=8,000,023; pass a larger max_bytes",
    ) as excinfo:
        mv.load(path, max_bytes=8_000_023)
    _one_line(excinfo)


def test_default_limit_is_read_when_load_is_called(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    mv.save({"w": mv.zeros(100)}, path)  # float32: 400 bytes
    monkeypatch.setattr(serialization, "MAX_LOAD_BYTES", 399)
    with pytest.raises(ValueError, match="over the limit of max_bytes=399"):
        mv.load(path)
    assert serialization.MAX_LOAD_BYTES < 3_200_000_000  # the 3 MB bomb expands to 3.2 GB


# --- what still loads ----------------------------------------------------------------------


@given(
    array=hnp.arrays(
        st.sampled_from(
            [np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64, "<U5"]
        ),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    ),
    fortran=st.booleans(),
    compressed=st.booleans(),
)
def test_any_numeric_or_text_array_round_trips(tmp_path_factory, array, fortran, compressed):
    path = tmp_path_factory.mktemp("npz") / "a.npz"
    array = np.asfortranarray(array) if fortran else array
    (np.savez_compressed if compressed else np.savez)(path, a=array, b=np.arange(3))
    loaded = mv.load(path)
    assert list(loaded) == ["a", "b"]
    np.testing.assert_array_equal(loaded["a"].numpy(), array)
    assert loaded["a"].numpy().dtype == array.dtype


def test_npy_version_2_headers_and_empty_archives_load(tmp_path):
    data = np.arange(6.0).reshape(2, 3)
    path = _zip(
        tmp_path / "v2.npz", {"w.npy": _npy_bytes((2, 3), data=data.tobytes(), version=(2, 0))}
    )
    np.testing.assert_array_equal(mv.load(path)["w"].numpy(), data)
    np.savez(tmp_path / "empty.npz")
    assert mv.load(tmp_path / "empty.npz") == {}


# --- temporary files of interrupted writes -------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys, time
    from minivision.serialization import atomic_write

    def write(f):
        f.write(b"half a checkpoint")
        f.flush()
        print("writing", flush=True)
        time.sleep(600)

    atomic_write(sys.argv[1], write)
""")


def _temp_files(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith(".tmp-"))


def test_killed_write_leaves_a_temp_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "ckpt.npz"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline() == "writing\n"
        [live] = _temp_files(tmp_path)
        mv.save({"w": mv.ones(2)}, tmp_path / "other.npz")  # a write beside a live writer
        assert _temp_files(tmp_path) == [live]  # leaves its temporary file alone
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert _temp_files(tmp_path) == [live]  # what the issue saw: kill -9 leaves it behind
    (tmp_path / ".tmp-notes.txt").write_text("another suffix")  # not a .npz write's
    (tmp_path / ".tmp-mine.npz").write_text("not named as mkstemp names")
    mv.save({"w": mv.ones(2)}, target)
    assert _temp_files(tmp_path) == [".tmp-mine.npz", ".tmp-notes.txt"]
    np.testing.assert_array_equal(mv.load(target)["w"].numpy(), [1.0, 1.0])


def test_cleanup_racing_a_new_writer_leaves_it_a_locked_file(tmp_path, monkeypatch):
    """A cleaner may catch a temp file before its writer locks it; the writer then takes another."""
    made = []
    real_mkstemp = serialization.tempfile.mkstemp

    def mkstemp_then_clean(**kwargs):
        fd, tmp = real_mkstemp(**kwargs)
        made.append(tmp)
        if len(made) == 1:  # another process's cleanup runs in the instant before the lock
            serialization._remove_abandoned_temp_files(kwargs["dir"], kwargs["suffix"])
        return fd, tmp

    monkeypatch.setattr(serialization.tempfile, "mkstemp", mkstemp_then_clean)
    atomic_write(tmp_path / "a.npz", lambda f: f.write(b"data"))
    assert len(made) == 2 and (tmp_path / "a.npz").read_bytes() == b"data"
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("max_bytes", ["10", 0, -5, 1.5, True])
def test_max_bytes_must_be_a_positive_integer(tmp_path, max_bytes):
    path = tmp_path / "w.npz"
    mv.save({"w": np.zeros(3)}, path)
    with pytest.raises(
        ValueError,
        match=rf"load: max_bytes must be a positive integer number of bytes, got {max_bytes!r}",
    ):
        mv.load(path, max_bytes=max_bytes)
