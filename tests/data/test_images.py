import numpy as np
import pytest

from cellscreen.data.images import ImageReadError, border_crop, load_rgb, probe_image, resize_square
from tests.badfiles import write_all

DECODED = ["gray.png", "rgba.png", "palette.png", "gray16.png", "cmyk.jpg", "exif_rotated.jpg", "cell.bmp", "cell.tiff"]
REFUSED = ["zero_bytes.png", "truncated.png", "truncated.jpg", "text_not_image.png", "bomb.png"]


@pytest.fixture
def bad_files(tmp_path):
    return write_all(tmp_path)


@pytest.mark.parametrize("name", DECODED)
def test_convertible_images_become_8bit_rgb(bad_files, name):
    array = load_rgb(bad_files[name][0])
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3


@pytest.mark.parametrize("name", REFUSED)
def test_unusable_files_raise_with_a_reason(bad_files, name):
    path, expected = bad_files[name]
    with pytest.raises(ImageReadError, match=expected):
        load_rgb(path)


def test_exif_orientation_is_applied(bad_files):
    # stored 20 wide x 10 high, orientation 6: displayed 10 wide x 20 high
    assert load_rgb(bad_files["exif_rotated.jpg"][0]).shape == (20, 10, 3)
    info = probe_image(bad_files["exif_rotated.jpg"][0])
    assert (info.width, info.height, info.format) == (10, 20, "JPEG")


def test_sixteen_bit_is_scaled_not_clipped(bad_files):
    assert load_rgb(bad_files["gray16.png"][0]).max() == 255  # 65535 -> 255, not 65535 & 0xff


def test_transparency_is_composited_on_black(bad_files):
    array = load_rgb(bad_files["rgba.png"][0])
    assert array[0, 0].tolist() == [0, 0, 0]


def test_bomb_limit_is_checked_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    from PIL import Image

    Image.new("RGB", (300, 300)).save(path)
    with pytest.raises(ImageReadError, match="too large"):
        load_rgb(path, max_pixels=300 * 299)
    assert load_rgb(path, max_pixels=300 * 300).shape == (300, 300, 3)


def test_missing_file_is_a_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read"):
        load_rgb(tmp_path / "absent.png")


def test_border_crop_and_square_resize():
    array = np.full((450, 450, 3), 7, np.uint8)
    assert border_crop(array, 25).shape == (400, 400, 3)
    assert border_crop(np.zeros((40, 40, 3), np.uint8), 25).shape == (40, 40, 3)  # too small: untouched
    oval = np.full((20, 10, 3), 200, np.uint8)
    square = resize_square(oval, 20)
    assert square.shape == (20, 20, 3)
    assert square[10, 0].tolist() == [0, 0, 0] and square[10, 10].tolist() == [200, 200, 200]  # padded, not stretched


def test_reduce_bicubic_differs_from_bicubic_only_when_shrinking_twofold():
    from cellscreen.data.images import INTERPOLATIONS

    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (17, 17, 3), dtype=np.uint8), 8, 0), 8, 1)  # 136 px
    near = smooth[:30, :30]  # 30 -> 20 px: less than a twofold shrink, no block averaging
    assert np.array_equal(resize_square(near, 20, "reduce-bicubic"), resize_square(near, 20, "bicubic"))
    exact, reduced = resize_square(smooth, 64, "bicubic"), resize_square(smooth, 64, "reduce-bicubic")
    difference = np.abs(exact.astype(int) - reduced.astype(int))
    assert difference.max() > 0 and difference.mean() < 3  # other pixels, but close ones
    assert set(INTERPOLATIONS) == {"bicubic", "reduce-bicubic"}
    with pytest.raises(ValueError, match="bicubic, reduce-bicubic"):
        resize_square(smooth, 64, "lanczos")


@pytest.mark.parametrize("name", ["gray.png", "cmyk.jpg", "cell.bmp", "cell.tiff", "palette.png"])
def test_damaged_bytes_never_escape_as_other_errors(bad_files, tmp_path, name):
    original = bad_files[name][0].read_bytes()
    rng = np.random.default_rng(0)
    for trial in range(60):
        data = bytearray(original)
        for position in rng.integers(0, min(len(data), 200), size=3):  # headers live up front
            data[position] = int(rng.integers(0, 256))
        if trial % 3 == 0:
            data = data[: int(rng.integers(1, len(data)))]
        path = tmp_path / f"damaged_{trial}{bad_files[name][0].suffix}"
        path.write_bytes(bytes(data))
        try:
            array = load_rgb(path)
        except ImageReadError:
            continue
        assert array.dtype == np.uint8 and array.shape[2] == 3


def _png_with(array, **kwargs) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def test_plain_rgb_pngs_take_the_fast_decoder_and_give_pillows_pixels(monkeypatch):
    from cellscreen.data import images

    if images.pyspng is None:
        pytest.skip("pyspng is not installed")
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((16, 16), (31, 17), (1, 40))]
    encoded = [_png_with(a) for a in arrays] + [_png_with(arrays[1], optimize=True, compress_level=9)]
    calls = []
    real_load = images.pyspng.load
    monkeypatch.setattr(images.pyspng, "load", lambda data: calls.append(1) or real_load(data))
    fast = [images.decode_image(data) for data in encoded]
    assert len(calls) == len(encoded)
    monkeypatch.setattr(images, "pyspng", None)
    for (array, info), data, original in zip(fast, encoded, [*arrays, arrays[1]]):
        slow, slow_info = images.decode_image(data)
        np.testing.assert_array_equal(array, slow)
        np.testing.assert_array_equal(array, original)
        assert info == slow_info


def test_other_pngs_go_to_pillow(monkeypatch):
    from PIL import Image

    from cellscreen.data import images

    if images.pyspng is None:
        pytest.skip("pyspng is not installed")
    calls = []
    monkeypatch.setattr(images.pyspng, "load", lambda data: calls.append(1))
    rgb = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: Pillow turns it upright
    cases = {
        "rgba": _png_with(np.dstack([rgb, np.full((12, 10), 255, np.uint8)])),
        "gray": _png_with(rgb[:, :, 0]),
        "16-bit": _png_with(np.zeros((12, 10), np.uint16)),
        "exif": _png_with(rgb, exif=exif.tobytes()),
    }
    for name, data in cases.items():
        array, _ = images.decode_image(data)
        assert array.shape[2] == 3 and array.dtype == np.uint8, name
    assert images.decode_image(cases["exif"])[0].shape == (10, 12, 3)
    with pytest.raises(ImageReadError, match="too large"):  # over the pixel limit: refused, not decoded
        images.decode_image(_png_with(rgb), max_pixels=10 * 12 - 1)
    assert calls == []
