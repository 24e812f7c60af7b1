"""Tests for vlm_course.images: every input is built here, in tmp_path or memory; URLs use a local server."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from vlm_course.images import (
    ImageDecodeError,
    ImageDownloadError,
    ImageLoadError,
    ImageNotFoundError,
    ImageTooLargeError,
    load_image,
    load_images,
    scan_folder,
)

RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def red_blue(size=(8, 4)) -> Image.Image:
    """Left half red, right half blue."""
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:, : size[0] // 2] = RED
    array[:, size[0] // 2 :] = BLUE
    return Image.fromarray(array)


def px(image: Image.Image, xy) -> tuple[int, int, int]:
    return tuple(int(v) for v in image.getpixel(xy))


def close(a, b, tol=3) -> bool:
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b, strict=True))


def raised(exc_type, source, **kwargs) -> str:
    """Load ``source``, expect exactly ``exc_type`` with no chained traceback, return its message."""
    with pytest.raises(exc_type) as info:
        load_image(source, **kwargs)
    assert type(info.value) is exc_type
    assert info.value.__cause__ is None and (
        info.value.__context__ is None or info.value.__suppress_context__
    )
    return str(info.value)


# --- good inputs ---------------------------------------------------------------------------------


def test_every_source_kind_gives_the_same_loaded_rgb_image(tmp_path):
    data = encode(red_blue())
    path = tmp_path / "rb.png"
    path.write_bytes(data)
    sources = [str(path), path, data, bytearray(data), io.BytesIO(data), red_blue(), np.asarray(red_blue())]
    with path.open("rb") as f:
        sources.append(f)
        images = [load_image(s) for s in sources]
    path.unlink()  # fully loaded: nothing is read from the file any more
    for image in images:
        assert image.mode == "RGB" and image.size == (8, 4)
        assert np.array_equal(np.asarray(image), np.asarray(red_blue()))


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    image = load_image(encode(cmyk, "JPEG", quality=95))
    assert image.mode == "RGB" and close(px(image, (8, 8)), RED, tol=8)


def test_palette_png_with_transparency_is_composited_on_white():
    pal = Image.new("P", (8, 4), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (transparent), 1 red
    pal.paste(1, (4, 0, 8, 4))
    image = load_image(encode(pal, transparency=0))
    assert px(image, (1, 1)) == WHITE and px(image, (6, 1)) == RED
    plain = load_image(encode(pal))  # no transparency: black stays black
    assert px(plain, (1, 1)) == BLACK


def test_16bit_png_and_mode_i_are_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 32896, 65535]], np.uint16)
    png = encode(Image.fromarray(values))
    assert Image.open(io.BytesIO(png)).mode in ("I;16", "I")
    expected = [0, 100, 128, 255]
    assert np.asarray(load_image(png))[0, :, 0].tolist() == expected
    mode_i = Image.fromarray(values.astype(np.int32))
    assert mode_i.mode == "I"
    assert np.asarray(load_image(mode_i))[0, :, 0].tolist() == expected
    assert np.asarray(load_image(values))[0, :, 1].tolist() == expected


def test_la_and_rgba_are_composited_on_white():
    la = Image.fromarray(np.array([[[0, 0], [0, 255], [0, 128]]], np.uint8), mode="LA")
    image = load_image(encode(la))
    assert (
        px(image, (0, 0)) == WHITE and px(image, (1, 0)) == BLACK and close(px(image, (2, 0)), (127,) * 3, 1)
    )
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [255, 0, 0, 128]]], np.uint8)
    for source in (encode(Image.fromarray(rgba)), Image.fromarray(rgba), rgba):
        image = load_image(source)
        assert px(image, (0, 0)) == WHITE and px(image, (1, 0)) == RED
        assert close(px(image, (2, 0)), (255, 127, 127), 1)


def test_callers_pil_image_is_not_changed():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    assert px(load_image(rgba), (0, 0)) == WHITE
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (0, 0, 255, 0)


def test_exif_orientation_6_is_applied():
    stored = Image.new("RGB", (64, 32), BLUE)
    stored.paste(RED, (0, 0, 16, 16))  # red block top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(stored, "JPEG", quality=95, exif=exif)
    for source in (data, Image.open(io.BytesIO(data))):
        image = load_image(source)
        assert image.size == (32, 64)
        assert close(px(image, (24, 8)), RED, 12)  # now top-right
        assert close(px(image, (8, 8)), BLUE, 12) and close(px(image, (24, 56)), BLUE, 12)


def test_numpy_arrays():
    gray = np.array([[0, 255]], np.uint8)
    assert np.asarray(load_image(gray)).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    assert np.asarray(load_image(gray[..., None])).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    floats = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    assert np.asarray(load_image(floats)).tolist() == [[[0, 128, 255]]]
    rgb = np.zeros((3, 5, 3), np.uint8)
    assert load_image(rgb).size == (5, 3)


# --- bad inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(tmp_path, fmt):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    message = raised(ImageDecodeError, path)
    assert str(path) in message and "re-download" in message


def test_random_bytes_and_text_named_jpg(tmp_path):
    message = raised(ImageDecodeError, np.random.default_rng(1).bytes(300))
    assert "<bytes>" in message and "not an image" in message
    text = tmp_path / "notes.jpg"
    text.write_text("just some notes, not a picture\n")
    message = raised(ImageDecodeError, text)
    assert str(text) in message and "text" in message


def test_missing_empty_and_folder_paths(tmp_path):
    missing = tmp_path / "nope.png"
    assert str(missing) in raised(ImageNotFoundError, missing)
    assert "Empty path" in raised(ImageLoadError, "")
    assert "empty data" in raised(ImageDecodeError, b"")
    (tmp_path / "empty.png").touch()
    assert "empty.png" in raised(ImageDecodeError, tmp_path / "empty.png")
    assert "scan_folder" in raised(ImageLoadError, tmp_path)
    assert "http" in raised(ImageLoadError, "ftp://example.org/cat.png")


@pytest.mark.parametrize("source", [123, None, ["a.png"], {"url": "x"}])
def test_wrong_types_raise_type_error(source):
    with pytest.raises(TypeError, match="URL .*path.*bytes.*PIL image.*numpy array"):
        load_image(source)


def test_text_mode_file_object(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode(red_blue()))
    with path.open("r", encoding="latin-1") as f, pytest.raises(TypeError, match="binary mode"):
        load_image(f)


@pytest.mark.parametrize(
    ("array", "hint"),
    [
        (np.full((2, 2, 3), 2.0), "[0, 1]"),
        (np.full((2, 2), np.nan), "NaN"),
        (np.zeros((2, 2, 3), np.int64), "astype(np.uint8)"),
        (np.zeros((3, 8, 8), np.uint8), "channel-first"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_bad_arrays(array, hint):
    message = raised(ImageLoadError, array)
    assert "numpy array" in message and hint in message


def test_max_pixels_limit(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode(Image.new("RGB", (20, 20))))
    message = raised(ImageTooLargeError, path, max_pixels=100)
    assert str(path) in message and "400 pixels" in message and "max_pixels" in message
    assert load_image(path, max_pixels=400).size == (20, 20)
    raised(ImageTooLargeError, np.zeros((20, 20), np.uint8), max_pixels=100)


@pytest.mark.parametrize("side", [12, 20])  # 144 px: PIL only warns; 400 px: PIL raises (over 2x the limit)
def test_pil_decompression_bomb_limit(monkeypatch, side):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = encode(Image.new("RGB", (side, side)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        message = raised(ImageTooLargeError, data)
    assert "<bytes>" in message and "MAX_IMAGE_PIXELS" in message


# --- URLs, on a local server ---------------------------------------------------------------------

PNG = encode(red_blue())


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    release = threading.Event()

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path.startswith("/slow"):
            self.release.wait(10)
        if self.path.startswith(("/img", "/slow")):
            self._send(200, "image/png", PNG)
        elif self.path == "/page.html":
            self._send(200, "text/html; charset=utf-8", b"<!DOCTYPE html><html><body>cat</body></html>")
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, code, content_type, body):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _Handler.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_url_ok(server):
    image = load_image(f"{server}/img/ok.png")
    assert np.array_equal(np.asarray(image), np.asarray(red_blue()))


def test_url_html_page(server):
    message = raised(ImageDecodeError, f"{server}/page.html")
    assert f"{server}/page.html" in message and "HTML page" in message


def test_url_404(server):
    message = raised(ImageDownloadError, f"{server}/missing.png")
    assert f"{server}/missing.png" in message and "HTTP 404" in message


def test_url_timeout(server):
    message = raised(ImageDownloadError, f"{server}/slow.png", timeout=0.2)
    assert f"{server}/slow.png" in message and "timeout=0.2" in message


def test_url_connection_refused():
    with socket.socket() as s:  # a free port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cat.png"
    message = raised(ImageDownloadError, url)
    assert url in message and "VLM_COURSE_PROFILE=toy" in message


def test_url_cache_reused_offline(server, tmp_path):
    url = f"{server}/img/cached.png"
    first = load_image(url, cache_dir=tmp_path)
    entry = tmp_path / (hashlib.sha256(url.encode()).hexdigest() + ".png")
    assert entry.read_bytes() == PNG and [p.name for p in tmp_path.iterdir()] == [entry.name]
    second = load_image(url, cache_dir=tmp_path)
    assert _Handler.hits[url.removeprefix(server)] == 1  # served from the cache
    assert np.array_equal(np.asarray(first), np.asarray(second))
    entry.write_bytes(b"damaged")  # a damaged entry is downloaded again
    assert np.array_equal(np.asarray(load_image(url, cache_dir=tmp_path)), np.asarray(first))
    assert entry.read_bytes() == PNG


def test_failed_downloads_are_not_cached(server, tmp_path):
    for path in ("/page.html", "/missing.png"):
        with pytest.raises(ImageLoadError):
            load_image(server + path, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- load_images and scan_folder -----------------------------------------------------------------


def test_load_images(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    images = load_images([path, PNG, np.zeros((2, 3), np.uint8)])
    assert [im.size for im in images] == [(8, 4), (8, 4), (3, 2)]
    with pytest.raises(TypeError, match="load_image"):
        load_images(str(path))


def test_scan_folder(tmp_path):
    for name in ("b.png", "a.JPG", "c.txt", ".hidden.png", "sub/d.jpeg", "e.webp", ".git/f.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(PNG)
    (tmp_path / "folder.png").mkdir()
    assert scan_folder(tmp_path) == [tmp_path / "a.JPG", tmp_path / "b.png", tmp_path / "e.webp"]
    everything = scan_folder(str(tmp_path), recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in everything] == [
        "a.JPG",
        "b.png",
        "e.webp",
        "sub/d.jpeg",
    ]
    with pytest.raises(ImageNotFoundError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    with pytest.raises(ImageNotFoundError, match="not a folder"):
        scan_folder(tmp_path / "b.png")
