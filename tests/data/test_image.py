"""Reading image files: the pixel limit checked from the header, Pillow's own limit kept out
of the way, reduced decoding with ``max_side``, and every mode becoming RGB."""

import io
import json
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from minivision.data import _image  # noqa: E402
from minivision.data._image import (  # noqa: E402
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_PIXELS_ENV,
    image_size,
    max_image_pixels,
    read_image,
)

HUGE_HEADERS = {
    "60000x60000": (60000, 60000),
    "80000000x1": (80_000_000, 1),
    "10000x10000": (10000, 10000),
}


@pytest.fixture(autouse=True)
def no_limit_env(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)


def png_claiming(path, width, height):
    """A valid 8x8 PNG whose IHDR says width x height (CRC fixed), so nothing big is allocated."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"  # signature (8) + chunk length (4), then type and data
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def save(path, pixels, **kwargs):
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def smooth_rgb(height, width):
    """(height, width, 3) uint8 gradients: any sensible downsampling agrees on them closely."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    channels = [x, y, 0.5 + 0.4 * np.sin(3 * x + 2 * y)]
    return np.round(np.stack(channels, axis=-1) * 255).astype(np.uint8)


def area_weights(in_size, out_size):
    """(out_size, in_size) matrix averaging each output pixel's footprint [i s, (i+1) s), s = in/out."""
    scale = in_size / out_size
    starts, edges = np.arange(out_size)[:, None] * scale, np.arange(in_size)[None, :]
    overlap = np.clip(np.minimum(starts + scale, edges + 1) - np.maximum(starts, edges), 0, None)
    return overlap / scale


def area_resize(image, out_h, out_w):
    """(3, H, W) -> (3, out_h, out_w) by exact area averaging."""
    return area_weights(image.shape[1], out_h) @ image @ area_weights(image.shape[2], out_w).T


# ---------------------------------------------------------------- the pixel limit


@pytest.mark.parametrize("name", HUGE_HEADERS)
@pytest.mark.parametrize("reader", [read_image, image_size])
def test_huge_header_is_refused_in_one_line(tmp_path, name, reader):
    width, height = HUGE_HEADERS[name]
    path = png_claiming(tmp_path / f"{name}.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not appear either
        with pytest.raises(
            ValueError,
            match=rf"{name}\.png.* {width} x {height} = .*limit of 67,108,864.*"
            rf"{MAX_PIXELS_ENV}",
        ) as info:
            reader(path)
    assert "\n" not in str(info.value)


def test_huge_headers_are_refused_fast_without_allocating(tmp_path):
    """In a fresh process (so peak RSS means something): each refusal under a second, < 32 MiB."""
    paths = {
        name: str(png_claiming(tmp_path / f"{name}.png", *size))
        for name, size in HUGE_HEADERS.items()
    }
    small = str(png_claiming(tmp_path / "small.png", 8, 8))
    script = textwrap.dedent(f"""
        import json, resource, time
        from minivision.data._image import image_size, read_image
        vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))  # a regression fails, not swaps
        read_image({small!r}); image_size({small!r})  # Pillow loads its plugins on first use
        report = {{}}
        for name, path in {paths!r}.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            try:
                read_image(path)
                outcome = "read"
            except Exception as exc:
                outcome = type(exc).__name__ + ": " + str(exc)
            report[name] = (outcome, time.perf_counter() - start,
                            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
        print(json.dumps(report))
    """)
    if not sys.platform.startswith("linux"):
        pytest.skip("measures memory through /proc and RLIMIT_AS")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for name, (outcome, seconds, growth) in json.loads(done.stdout.splitlines()[-1]).items():
        assert outcome.startswith("ValueError: ") and "over minivision's limit" in outcome, (
            name,
            outcome,
        )
        assert seconds < 1.0, (name, seconds)
        assert growth < 32 * 2**20, (name, growth)


def test_limit_is_inclusive_and_max_pixels_overrides_env(tmp_path, monkeypatch):
    path = save(tmp_path / "a.png", smooth_rgb(20, 30))
    assert read_image(path, max_pixels=600).shape == (3, 20, 30)
    with pytest.raises(
        ValueError, match=r"a\.png.* 30 x 20 = 600 pixels, over minivision's limit of 599"
    ):
        read_image(path, max_pixels=599)
    monkeypatch.setenv(MAX_PIXELS_ENV, "599")
    with pytest.raises(ValueError, match=r"limit of 599;"):
        image_size(path)
    assert image_size(path, max_pixels=600) == (30, 20)


@pytest.mark.parametrize(
    "raw, expected", [("100", 100), ("4_000_000_000", 4_000_000_000), (" 7 ", 7)]
)
def test_env_var_sets_the_limit(monkeypatch, raw, expected):
    monkeypatch.setenv(MAX_PIXELS_ENV, raw)
    assert max_image_pixels() == expected
    assert max_image_pixels(5) == 5


def test_default_limit_is_8192_squared():
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 8192 * 8192


@pytest.mark.parametrize("raw", ["", "abc", "0", "-5", "1e8", "2.5"])
def test_bad_env_value_names_the_variable(tmp_path, monkeypatch, raw):
    path = save(tmp_path / "a.png", smooth_rgb(4, 4))
    monkeypatch.setenv(MAX_PIXELS_ENV, raw)
    for reader in (read_image, image_size):
        with pytest.raises(
            ValueError, match=rf"environment variable {MAX_PIXELS_ENV}={raw!r} is not a positive"
        ):
            reader(path)


@pytest.mark.parametrize("argument", ["max_pixels", "max_side"])
@pytest.mark.parametrize(
    "value, error",
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("64", TypeError)],
)
def test_bad_arguments_are_named(tmp_path, argument, value, error):
    path = save(tmp_path / "a.png", smooth_rgb(4, 4))
    with pytest.raises(error, match=rf"{argument} must be a positive integer, got .*{value!r}"):
        read_image(path, **{argument: value})


def test_zero_sized_image_is_refused(tmp_path, monkeypatch):
    # Pillow's own decoders reject a 0 in a PNG header; a plugin that accepts one meets our check.
    png = png_claiming(tmp_path / "zero.png", 0, 10)
    with pytest.raises(ValueError, match=r"zero\.png.* could not be decoded"):
        read_image(png)
    monkeypatch.setattr(Image, "open", lambda path: Image.new("RGB", (0, 10)))
    with pytest.raises(
        ValueError, match=r"zero\.png' is 0 x 10 pixels; expected a width and height of at least 1"
    ):
        image_size(png)


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.png' does not exist"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"junk\.png' could not be decoded"):
        image_size(tmp_path / "junk.png")


# ---------------------------------------------------------------- Pillow's own limit


def test_pillow_limit_never_fires_below_ours_and_is_restored(tmp_path, monkeypatch):
    monkeypatch.setattr(
        Image, "MAX_IMAGE_PIXELS", 100
    )  # Pillow warns above 100 and raises above 200
    path = save(tmp_path / "a.png", smooth_rgb(20, 20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).shape == (3, 20, 20)
        assert read_image(path, max_side=10).shape == (3, 10, 10)
        assert image_size(path) == (20, 20)
        with pytest.raises(ValueError, match="over minivision's limit"):
            read_image(path, max_pixels=399)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_raised_limit_admits_a_header_beyond_pillows(tmp_path, monkeypatch):
    path = png_claiming(tmp_path / "big.png", 60000, 60000)  # 20x Pillow's error threshold
    monkeypatch.setenv(MAX_PIXELS_ENV, str(60000 * 60000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_size(path) == (60000, 60000)
    assert Image.MAX_IMAGE_PIXELS == int(1024 * 1024 * 1024 // 4 // 3)


def test_overlapping_reads_restore_pillows_limit_only_when_the_last_ends(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 123)
    first, second = _image._pil_limit_lifted(Image), _image._pil_limit_lifted(Image)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert Image.MAX_IMAGE_PIXELS is None  # the second read is still decoding
    second.__exit__(None, None, None)
    assert Image.MAX_IMAGE_PIXELS == 123


# ---------------------------------------------------------------- max_side and modes


@pytest.mark.parametrize(
    "height, width, max_side, shape",
    [
        (70, 100, 32, (3, 22, 32)),
        (100, 70, 32, (3, 32, 22)),
        (48, 64, 16, (3, 12, 16)),
        (1, 500, 50, (3, 1, 50)),
        (30, 40, 40, (3, 30, 40)),
        (30, 40, 1000, (3, 30, 40)),
    ],
)
def test_max_side_shape(tmp_path, height, width, max_side, shape):
    path = save(tmp_path / "a.png", smooth_rgb(height, width))
    image = read_image(path, max_side=max_side)
    assert image.shape == shape and image.dtype == np.float32
    assert image.flags.c_contiguous and 0 <= image.min() and image.max() <= 1


def test_full_read_values(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    image = read_image(save(tmp_path / "a.png", pixels))
    np.testing.assert_array_equal(image, pixels.transpose(2, 0, 1).astype(np.float32) / 255)
    assert image.flags.c_contiguous


def test_max_side_by_a_whole_factor_is_the_block_mean(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
    reduced = read_image(save(tmp_path / "a.png", pixels), max_side=16)
    blocks = pixels.astype(np.float64).reshape(12, 4, 16, 4, 3).mean(axis=(1, 3)) / 255
    # Pillow rounds to 8 bits after each of its two passes: at most one step off.
    np.testing.assert_allclose(reduced, blocks.transpose(2, 0, 1), atol=1 / 255 + 1e-6, rtol=0)


@pytest.mark.parametrize(
    "height, width, max_side", [(210, 300, 96), (297, 183, 120), (300, 200, 64)]
)
def test_max_side_is_close_to_area_average_of_full_read(tmp_path, height, width, max_side):
    path = save(tmp_path / "a.png", smooth_rgb(height, width))
    reduced = read_image(path, max_side=max_side)
    expected = area_resize(read_image(path).astype(np.float64), *reduced.shape[1:])
    # Pillow's box filter takes whole pixels (by centre) where a window cuts one: close on smooth images.
    np.testing.assert_allclose(reduced, expected, atol=2 / 255, rtol=0)


def test_jpeg_is_decoded_reduced(tmp_path, monkeypatch):
    path = save(tmp_path / "a.jpg", smooth_rgb(600, 1000), quality=95)
    resized_from, original_resize = [], Image.Image.resize

    def recording_resize(self, size, *args, **kwargs):
        resized_from.append(self.size)
        return original_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording_resize)
    reduced = read_image(path, max_side=100)
    assert reduced.shape == (3, 60, 100)
    assert resized_from == [(125, 75)]  # decoded at 1/8 scale, then box-averaged to fit
    expected = area_resize(read_image(path).astype(np.float64), 60, 100)
    np.testing.assert_allclose(reduced, expected, atol=4 / 255, rtol=0)


@pytest.mark.parametrize("max_side", [None, 4])
def test_grey_and_one_bit_become_rgb(tmp_path, max_side):
    grey = np.tile(
        np.array([[0, 100], [200, 50]], np.uint8), (4, 4)
    )  # 8x8, every 2x2 block the same
    bits = np.tile(np.array([[True, False], [False, False]]), (4, 4))
    for name, pixels, value in [
        ("grey", grey, (0 + 100 + 200 + 50) / 4 / 255),
        ("bits", bits, 0.25),
    ]:
        path = tmp_path / f"{name}.png"
        Image.fromarray(pixels).save(path)
        image = read_image(path, max_side=max_side)
        assert image.shape == ((3, 8, 8) if max_side is None else (3, 4, 4))
        np.testing.assert_array_equal(image[0], image[1])
        np.testing.assert_array_equal(image[0], image[2])
        if max_side is None:
            np.testing.assert_array_equal(
                image[0], pixels.astype(np.float32) / (1 if name == "bits" else 255)
            )
        else:
            np.testing.assert_allclose(image, value, atol=0.5 / 255 + 1e-6)


def test_palette_colours_are_averaged_not_their_indices(tmp_path):
    indices = np.tile(np.array([[0, 1], [1, 0]], np.uint8), (4, 4))
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (3 * 254))
    path = tmp_path / "p.png"
    palette_image.save(path)
    full = read_image(path)
    np.testing.assert_array_equal(full[:, 0, :2], [[1, 0], [0, 0], [0, 1]])
    np.testing.assert_allclose(
        read_image(path, max_side=4),
        np.array([0.5, 0, 0.5])[:, None, None] * np.ones((3, 4, 4)),
        atol=0.5 / 255 + 1e-6,
    )


def test_alpha_is_dropped_before_averaging(tmp_path):
    """RGBA reads as its RGB, reduced or not (no weighting by alpha)."""
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 1::2, 1] = 100  # odd columns carry green but are fully transparent
    rgba[:, 0::2, 3] = 255
    path = save(tmp_path / "a.png", rgba)
    np.testing.assert_array_equal(
        read_image(path), rgba[..., :3].transpose(2, 0, 1) / np.float32(255)
    )
    np.testing.assert_allclose(
        read_image(path, max_side=4),
        np.array([200, 50, 0])[:, None, None] / 255 * np.ones((3, 4, 4)),
        atol=0.5 / 255 + 1e-6,
    )
