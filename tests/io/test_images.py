"""load_image: EXIF orientation, mode conversions, max_size, and user-fixable errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samadapter.errors import ImageError
from samadapter.io.images import IMAGE_SUFFIXES, is_image_path, load_image


def _quadrants(h: int, w: int) -> np.ndarray:
    """``[h, w, 3]`` uint8 with four solid quadrants: red, green / blue, white."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2 :] = (0, 255, 0)
    img[h // 2 :, : w // 2] = (0, 0, 255)
    img[h // 2 :, w // 2 :] = (255, 255, 255)
    return img


def test_suffixes() -> None:
    assert set(IMAGE_SUFFIXES) == {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
    assert is_image_path("a/B.JPG") and is_image_path("x.webp") and not is_image_path("x.txt")


def test_rgb_png_roundtrip_exact(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (13, 17, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_exif_orientation_6_is_rotated(tmp_path: Path) -> None:
    stored = _quadrants(40, 80)  # landscape on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "phone.jpg")
    assert out.shape == (80, 40, 3)  # portrait after applying the tag
    expected = np.rot90(stored, k=-1)  # 90 degrees clockwise
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 4
    # top-left of the displayed image is the stored bottom-left (blue)
    assert tuple(out[5, 5]) == pytest.approx((0, 0, 255), abs=12)
    assert tuple(out[5, 35]) == pytest.approx((255, 0, 0), abs=12)


def test_grayscale_png(tmp_path: Path) -> None:
    gray = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (12, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: colour kept
    rgba[0, 1] = (0, 0, 0, 0)  # transparent black: white
    rgba[0, 2] = (0, 0, 0, 128)  # half transparent black over white: mid grey
    rgba[1:] = (200, 0, 0, 255)
    Image.fromarray(rgba).save(tmp_path / "t.png")
    out = load_image(tmp_path / "t.png")
    assert out.shape == (4, 4, 3)
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert tuple(out[0, 2]) == pytest.approx((127, 127, 127), abs=1)
    assert tuple(out[2, 2]) == (200, 0, 0)


def test_la_and_palette_transparency(tmp_path: Path) -> None:
    la = Image.new("LA", (3, 2), (50, 255))
    la.putpixel((0, 0), (0, 0))
    la.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 2]) == (50, 50, 50)

    pal = Image.new("P", (3, 2), 1)
    pal.putpalette([0, 0, 0, 0, 128, 255] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    out = load_image(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (0, 128, 255)


def test_palette_without_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (2, 2), 3)
    pal.putpalette([0, 0, 0] * 3 + [12, 34, 56] + [0] * 756)
    pal.save(tmp_path / "p.bmp")
    out = load_image(tmp_path / "p.bmp")
    assert (out == np.array([12, 34, 56], dtype=np.uint8)).all()


def test_16bit_png_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 255, 256, 4660], [32768, 65280, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    out = load_image(tmp_path / "d.png")
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 1, 18], [128, 255, 255, 3]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_48bit_rgb_png_scaled(tmp_path: Path) -> None:
    bgr16 = np.zeros((2, 2, 3), dtype=np.uint16)
    bgr16[0, 0] = (65535, 256, 0)  # B, G, R as OpenCV writes them
    bgr16[1, 1] = (0, 0, 65280)
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), bgr16)
    out = load_image(tmp_path / "rgb16.png")
    assert out.dtype == np.uint8
    assert tuple(out[0, 0]) == (0, 1, 255) and tuple(out[1, 1]) == (255, 0, 0)


def test_32bit_int_tiff_scaled_by_max(tmp_path: Path) -> None:
    arr = np.array([[0, 70000], [140000, -5]], dtype=np.int32)
    Image.fromarray(arr).save(tmp_path / "i.tif")
    out = load_image(tmp_path / "i.tif")
    np.testing.assert_array_equal(out[..., 1], [[0, 128], [255, 0]])


def test_float_tiff_unit_range(tmp_path: Path) -> None:
    arr = np.array([[0.0, 0.5], [1.0, np.nan]], dtype=np.float32)
    Image.fromarray(arr).save(tmp_path / "f.tif")
    out = load_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(out[..., 0], [[0, 128], [255, 0]])


def test_cmyk(tmp_path: Path) -> None:
    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "c.tif")
    out = load_image(tmp_path / "c.tif")
    assert out.shape == (3, 4, 3)
    assert (out == np.array([255, 0, 0], dtype=np.uint8)).all()


def test_max_size_caps_long_side(tmp_path: Path) -> None:
    Image.fromarray(_quadrants(50, 100)).save(tmp_path / "q.png")
    out = load_image(tmp_path / "q.png", max_size=40)
    assert out.shape == (20, 40, 3)
    assert tuple(out[2, 2]) == (255, 0, 0) and tuple(out[17, 37]) == (255, 255, 255)
    assert load_image(tmp_path / "q.png", max_size=100).shape == (50, 100, 3)
    assert load_image(tmp_path / "q.png", max_size=500).shape == (50, 100, 3)
    tall = tmp_path / "tall.png"
    Image.fromarray(_quadrants(300, 7)).save(tall)
    assert load_image(tall, max_size=60).shape == (60, 1, 3)  # never 0 wide
    with pytest.raises(ValueError, match="max_size"):
        load_image(tmp_path / "q.png", max_size=0)


def test_max_size_area_average(tmp_path: Path) -> None:
    stripes = np.zeros((4, 4, 3), dtype=np.uint8)
    stripes[:, ::2] = 200  # 1-px columns 200 / 0: area resampling gives their mean
    Image.fromarray(stripes).save(tmp_path / "s.png")
    out = load_image(tmp_path / "s.png", max_size=2)
    assert out.shape == (2, 2, 3) and (out == 100).all()


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match="does not exist") as info:
        load_image(p)
    assert str(p) in str(info.value) and info.value.hint
    assert "\n" not in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "e.png")


def test_not_an_image(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("just some text, not a JPEG\n")
    with pytest.raises(ImageError, match="not an image") as info:
        load_image(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated(tmp_path: Path, suffix: str) -> None:
    arr = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = tmp_path / f"full{suffix}"
    Image.fromarray(arr).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated") as info:
        load_image(cut)
    assert str(cut) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_body(tmp_path: Path) -> None:
    arr = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    p = tmp_path / "bad.png"
    Image.fromarray(arr).save(p)
    data = bytearray(p.read_bytes())
    data[60:200] = bytes(140)  # zero the compressed data (and its CRC)
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"bad\.png"):
        load_image(p)


def test_large_jpeg_is_decoded_reduced_and_capped_with_a_warning(tmp_path: Path) -> None:
    arr = np.random.default_rng(4).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    p = tmp_path / "big.jpg"
    Image.fromarray(arr).save(p, quality=80)
    said: list[str] = []
    rgb = load_image(p, max_pixels=200_000, on_warning=said.append)
    h, w = rgb.shape[:2]
    assert h * w <= 200_000 and abs(w / h - 4 / 3) < 0.01 and w >= 510
    assert len(said) == 1 and "2000x1500" in said[0] and f"{w}x{h}" in said[0]
    assert load_image(p, max_pixels=10_000_000, on_warning=said.append).shape == (1500, 2000, 3)
    assert len(said) == 1  # under the cap: no warning


def test_large_grey_png_is_shrunk_in_its_own_mode(tmp_path: Path) -> None:
    arr = np.zeros((600, 900), np.uint8)
    arr[:, 450:] = 200
    p = tmp_path / "grey.png"
    Image.fromarray(arr).save(p)
    rgb = load_image(p, max_pixels=60_000)
    assert rgb.shape == (200, 300, 3)
    assert rgb[:, :140].max() == 0 and rgb[:, 160:].min() == 200


def test_declared_size_over_the_bomb_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    p = tmp_path / "bomb.png"
    p.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageError, match=r"bomb\.png is too large") as info:
        load_image(p, max_pixels=1_000_000)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("shape", "ok"),
    [
        ((400, 1), False),
        ((1, 400), False),
        ((7, 100), False),
        ((8, 160), True),
        ((8, 161), False),
        ((300, 451), True),
    ],
)
def test_check_image_shape(shape: tuple[int, int], ok: bool) -> None:
    from samadapter.io.images import check_image_shape

    image = np.zeros((*shape, 3), np.uint8)
    if ok:
        check_image_shape(image, "x.png")
    else:
        with pytest.raises(ImageError, match=rf"x\.png is {shape[1]}x{shape[0]} pixels: too thin"):
            check_image_shape(image, "x.png")
