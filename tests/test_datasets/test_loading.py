"""Tests of image loading: every kind of file, exact pixels, errors that name the file."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from mmllava.datasets.transforms import LoadImages, load_image
from mmllava.registry import TRANSFORMS


def _png16(array: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG written by hand (PIL cannot write 16-bit colour PNGs)."""
    h, w = array.shape[:2]
    raw = b''.join(b'\x00' + array[y].astype('>u2').tobytes() for y in range(h))

    def chunk(tag, data):
        crc = zlib.crc32(tag + data) & 0xffffffff
        return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', crc)

    header = struct.pack('>IIBBBBB', w, h, 16, color_type, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw))
            + chunk(b'IEND', b''))


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """Alpha compositing over white, as transformers' numpy convert_to_rgb writes it."""
    alpha = rgba[..., 3:4] / 255
    return np.round(alpha * rgba[..., :3] + (1 - alpha) * 255).astype(np.uint8)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_truncation_is_not_tolerated_globally():
    # The guarantee that truncated files raise rests on this PIL default.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_rgb_png_and_path_types(tmp_path, rng):
    arr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / 'rgb.png'
    Image.fromarray(arr).save(path)
    for src in (path, str(path)):
        image = load_image(src)
        assert image.mode == 'RGB' and image.size == (5, 7)
        np.testing.assert_array_equal(np.array(image), arr)


def test_rgba_png_composited_over_white(tmp_path, rng):
    rgba = rng.integers(0, 256, (16, 9, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255  # fully transparent, fully opaque
    path = tmp_path / 'rgba.png'
    Image.fromarray(rgba, 'RGBA').save(path)
    out = np.array(load_image(path))
    np.testing.assert_array_equal(out, _over_white(rgba))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], rgba[0, 1, :3])
    # Same pixels from a PIL image and from an array.
    np.testing.assert_array_equal(np.array(load_image(Image.fromarray(rgba, 'RGBA'))), out)
    np.testing.assert_array_equal(np.array(load_image(rgba)), out)


def test_matches_transformers_convert_to_rgb(rng):
    from transformers.image_transforms import convert_to_rgb
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    image = Image.fromarray(rgba, 'RGBA')
    expected = convert_to_rgb(image, return_numpy=True)
    np.testing.assert_array_equal(np.array(load_image(image)), expected)


def test_la_png(tmp_path):
    la = np.array([[[10, 0], [200, 255], [100, 128]]], dtype=np.uint8)
    path = tmp_path / 'la.png'
    Image.fromarray(la, 'LA').save(path)
    out = np.array(load_image(path))
    gray = la[..., :1].repeat(3, -1)
    expected = _over_white(np.concatenate([gray, la[..., 1:]], -1))
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [200, 200, 200])


def test_grayscale_png(tmp_path, rng):
    gray = rng.integers(0, 256, (6, 4), dtype=np.uint8)
    path = tmp_path / 'gray.png'
    Image.fromarray(gray, 'L').save(path)
    out = np.array(load_image(path))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(np.array(load_image(gray)), out)
    np.testing.assert_array_equal(np.array(load_image(gray[..., None])), out)


def test_palette_png_with_transparency(tmp_path):
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    image = Image.new('P', (3, 2))
    image.putpalette(palette)
    for x, index in enumerate((0, 1, 2)):
        image.putpixel((x, 0), index)
        image.putpixel((x, 1), index)
    path = tmp_path / 'p.png'
    image.save(path, transparency=1)  # index 1 (green) is transparent
    reread = Image.open(path)
    assert reread.mode == 'P' and reread.info['transparency'] == 1
    out = np.array(load_image(path))
    expected = np.array([[[255, 0, 0], [255, 255, 255], [0, 0, 255]]] * 2, dtype=np.uint8)
    np.testing.assert_array_equal(out, expected)


def test_palette_png_without_transparency(tmp_path):
    image = Image.new('P', (2, 1))
    image.putpalette([12, 34, 56, 78, 90, 123] + [0] * (256 * 3 - 6))
    image.putpixel((1, 0), 1)
    path = tmp_path / 'p.png'
    image.save(path)
    np.testing.assert_array_equal(np.array(load_image(path)), [[[12, 34, 56], [78, 90, 123]]])


@pytest.mark.parametrize('mode', ['I;16', 'I;16B'])
def test_gray16_png_scaled_by_high_byte(tmp_path, mode):
    values = np.array([[0, 255, 256, 1000], [32768, 40000, 65280, 65535]], dtype=np.uint16)
    dtype = '<u2' if mode == 'I;16' else '>u2'
    image = Image.frombytes(mode, (4, 2), values.astype(dtype).tobytes())
    path = tmp_path / 'gray16.png'
    image.save(path)
    assert Image.open(path).mode.startswith('I')
    out = np.array(load_image(path))
    expected = np.array([[0, 0, 1, 3], [128, 156, 255, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(expected, values >> 8)
    np.testing.assert_array_equal(out, np.repeat(expected[..., None], 3, -1))
    # In memory too, and in PIL's 32-bit 'I' mode; never PIL's convert('L'), which clips.
    np.testing.assert_array_equal(np.array(load_image(image)), out)
    as_i = Image.fromarray(values.astype(np.int32), 'I')
    np.testing.assert_array_equal(np.array(load_image(as_i)), out)
    np.testing.assert_array_equal(np.array(load_image(values)), out)


def test_rgb16_and_rgba16_png_use_the_same_rule(tmp_path, rng):
    rgb = rng.integers(0, 65536, (3, 5, 3), dtype=np.uint16)
    path = tmp_path / 'rgb16.png'
    path.write_bytes(_png16(rgb, color_type=2))
    np.testing.assert_array_equal(np.array(load_image(path)), (rgb >> 8).astype(np.uint8))

    rgba = rng.integers(0, 65536, (3, 5, 4), dtype=np.uint16)
    rgba[0, 0, 3] = 0
    path = tmp_path / 'rgba16.png'
    path.write_bytes(_png16(rgba, color_type=6))
    out = np.array(load_image(path))
    np.testing.assert_array_equal(out, _over_white((rgba >> 8).astype(np.uint8)))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])


def test_cmyk(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [100, 50, 25, 128], [10, 20, 30, 255]]],
                    dtype=np.uint8)
    # PIL's CMYK -> RGB: round((255 - c) * (255 - k) / 255).
    expected = np.array([[[255, 255, 255], [0, 255, 255], [77, 102, 115], [0, 0, 0]]])
    tiff = tmp_path / 'cmyk.tiff'  # lossless: exact pixel values
    Image.fromarray(cmyk, 'CMYK').save(tiff)
    np.testing.assert_array_equal(np.array(load_image(tiff)), expected)
    # A CMYK JPEG (lossy): the decoded CMYK through PIL's conversion.
    jpeg = tmp_path / 'cmyk.jpg'
    Image.fromarray(np.tile(cmyk, (8, 2, 1)), 'CMYK').save(jpeg, quality=100)
    decoded = Image.open(jpeg)
    assert decoded.mode == 'CMYK'
    out = np.array(load_image(jpeg))
    np.testing.assert_array_equal(out, np.array(decoded.convert('RGB')))
    assert np.abs(out[:1, :4].astype(int) - expected).max() <= 3


def test_jpeg_no_exif_transpose(tmp_path, rng):
    arr = rng.integers(0, 256, (4, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / 'rot.jpg'
    Image.fromarray(arr).save(path, exif=exif, quality=100)
    # Parity with the original LLaVA and transformers: the stored orientation is kept.
    assert load_image(path).size == (8, 4)


def test_missing_file(tmp_path):
    path = tmp_path / 'nope.jpg'
    with pytest.raises(FileNotFoundError, match='nope.jpg'):
        load_image(path)


@pytest.mark.parametrize('fmt', ['PNG', 'JPEG'])
def test_truncated_file_raises(tmp_path, rng, fmt):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f'cut.{fmt.lower()}'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r'cut\.(png|jpeg).*truncated'):
        load_image(path)


def test_not_an_image(tmp_path):
    path = tmp_path / 'junk.jpg'
    path.write_bytes(b'definitely not a picture')
    with pytest.raises(ValueError, match='junk.jpg'):
        load_image(path)
    with pytest.raises(ValueError, match='not a regular file'):
        load_image(tmp_path)


def test_array_validation():
    with pytest.raises(ValueError, match='uint8'):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match='shape'):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(TypeError, match='int'):
        load_image(3)
    with pytest.raises(ValueError, match="'F'"):
        load_image(Image.new('F', (2, 2)))


def test_load_images_transform(tmp_path, rng):
    a = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 2, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / 'a.png')
    transform = TRANSFORMS.build(dict(type='LoadImages'))
    results = transform({'images': ['a.png', str(tmp_path / 'a.png'), Image.fromarray(b), b],
                         'img_prefix': str(tmp_path), 'sample_id': 0})
    assert len(results['images']) == 4
    for image, expected in zip(results['images'], (a, a, b, b)):
        assert image.dtype == np.uint8 and image.flags.writeable
        np.testing.assert_array_equal(image, expected)
    assert results['ori_shapes'] == [(5, 7), (5, 7), (3, 2), (3, 2)]
    assert results['img_shapes'] == results['ori_shapes']
    assert results['img_paths'] == [str(tmp_path / 'a.png')] * 2 + [None, None]
    # data_root is the fallback prefix.
    results = transform({'images': ['a.png'], 'data_root': str(tmp_path)})
    np.testing.assert_array_equal(results['images'][0], a)


def test_load_images_text_only():
    results = LoadImages()({'sample_id': 1})
    assert results['images'] == [] and results['ori_shapes'] == []
    assert LoadImages()({'images': None})['images'] == []


def test_load_images_errors_name_sample_and_file(tmp_path):
    (tmp_path / 'bad.png').write_bytes(b'\x89PNG broken')
    with pytest.raises(FileNotFoundError, match=r"sample 'q7'.*missing\.png"):
        LoadImages()({'images': ['missing.png'], 'img_prefix': str(tmp_path), 'sample_id': 'q7'})
    with pytest.raises(ValueError, match=r"sample 3.*bad\.png"):
        LoadImages()({'images': ['bad.png'], 'img_prefix': str(tmp_path), 'sample_id': 3})
