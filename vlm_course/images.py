"""One image loader for the whole course.

``load_image`` takes a URL, a path, bytes, a binary file object, a PIL image or a numpy array and always
returns a fully loaded RGB PIL image: EXIF orientation applied, transparency composited on white, CMYK,
palette and 16-bit images converted properly. Every bad input raises one ``ImageLoadError`` (a
``ValueError``) that names the source and says what to do next; wrong types raise ``TypeError``.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import requests
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
ACCEPTED = "a URL (http/https), a path (str or pathlib.Path), bytes, a binary file object, a PIL image or a numpy array"
OFFLINE_HINT = (
    "If you are offline, use local images or the toy profile, which works offline: VLM_COURSE_PROFILE=toy."
)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error)
_WHITE = (255, 255, 255, 255)


class ImageLoadError(ValueError):
    """An image could not be loaded; the message names the source and what to do next."""


class ImageNotFoundError(ImageLoadError):
    """The path does not exist (or is not a file)."""


class ImageDecodeError(ImageLoadError):
    """The data is empty, truncated, corrupt or not an image at all."""


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than allowed (a possible decompression bomb)."""


class ImageDownloadError(ImageLoadError):
    """A URL could not be downloaded: no connection, timeout or HTTP error."""


def load_image(
    source: Any, *, timeout: float = 10.0, max_pixels: int | None = None, cache_dir: Path | None = None
) -> Image.Image:
    """Load ``source`` as a fully loaded RGB PIL image.

    ``timeout`` (seconds) applies to downloads. ``max_pixels`` lowers the pixel limit below
    ``PIL.Image.MAX_IMAGE_PIXELS`` (the smaller one applies to encoded data; only ``max_pixels`` to PIL
    images and arrays). With ``cache_dir`` a downloaded image is kept on disk and reused, so it works offline.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(_check_size(source, _describe(source), max_pixels), _describe(source))
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(bytes(source), "<bytes>", max_pixels)
    if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
        return _load_url(source, timeout=timeout, max_pixels=max_pixels, cache_dir=cache_dir)
    if isinstance(source, (str, os.PathLike)):
        return _decode(_read_path(source), str(source), max_pixels)
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<file object>"))
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(
                f"{name}: the file object returned {type(data).__name__}; open it in binary mode ('rb')."
            )
        return _decode(bytes(data), name, max_pixels)
    raise TypeError(f"load_image() accepts {ACCEPTED}; got {type(source).__name__}.")


def load_images(sources: Iterable[Any], **kwargs: Any) -> list[Image.Image]:
    """Load several images with :func:`load_image` (same keyword arguments), in order."""
    if isinstance(sources, (str, bytes, os.PathLike, Image.Image, np.ndarray)):
        raise TypeError("load_images() takes a list of sources; for one image use load_image().")
    return [load_image(s, **kwargs) for s in sources]


def scan_folder(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (by extension, case-insensitive; hidden files/folders skipped), sorted."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        kind = "is not a folder" if root.exists() else "does not exist"
        raise ImageNotFoundError(f"{root} {kind}; pass a folder that contains image files.")
    files = root.rglob("*") if recursive else root.iterdir()
    return sorted(
        p
        for p in files
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.is_file()
    )


# --- sources -------------------------------------------------------------------------------------


def _describe(source: Any) -> str:
    if isinstance(source, Image.Image):
        return f"<PIL image mode={source.mode} size={source.size}>"
    return f"<numpy array shape={source.shape} dtype={source.dtype}>"


def _read_path(source: str | os.PathLike) -> bytes:
    if str(source) == "":
        raise ImageLoadError("Empty path: pass the path of an image file.")
    path = Path(source).expanduser()
    if "://" in str(source):
        raise ImageLoadError(
            f"{source}: only http:// and https:// URLs are supported; download the file first."
        )
    if path.is_dir():
        raise ImageLoadError(
            f"{path} is a folder, not an image; use scan_folder() to list the images inside."
        )
    try:
        return path.read_bytes()
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" (relative paths start at {Path.cwd()})"
        raise ImageNotFoundError(f"{path}: no such file; check the path{where}.") from None
    except OSError as e:
        raise ImageLoadError(
            f"{path}: cannot read the file ({e.strerror or e}); check its permissions."
        ) from None


def _load_url(url: str, *, timeout: float, max_pixels: int | None, cache_dir: Path | None) -> Image.Image:
    cached = cache_path(url, cache_dir) if cache_dir is not None else None
    if cached is not None and cached.is_file():
        try:
            return _decode(cached.read_bytes(), f"{url} (cached in {cached})", max_pixels)
        except ImageDecodeError:
            cached.unlink(missing_ok=True)  # a damaged cache entry: download again
    data, content_type = _download(url, timeout)
    image = _decode(data, url, max_pixels, content_type=content_type)
    if cached is not None:
        _atomic_write(cached, data)
    return image


def _download(url: str, timeout: float) -> tuple[bytes, str]:
    try:
        response = requests.get(url, timeout=timeout, headers={"User-Agent": "vlm-course"})
        response.raise_for_status()
        return response.content, response.headers.get("Content-Type", "")
    except requests.HTTPError as e:
        code = e.response.status_code
        reason = e.response.reason or ""
        hint = "check the link" if code < 500 else "the server failed; try again later or use another image"
        raise ImageDownloadError(f"{url}: HTTP {code} {reason}; {hint}.") from None
    except requests.Timeout:
        raise ImageDownloadError(
            f"{url}: no answer within timeout={timeout} s; retry, pass a larger timeout=, or use a local file. "
            + OFFLINE_HINT
        ) from None
    except requests.ConnectionError as e:
        if "timed out" in str(e).lower():  # a read timeout while the body streams comes as ConnectionError
            raise ImageDownloadError(
                f"{url}: download timed out (timeout={timeout} s); retry or pass a larger timeout=."
            ) from None
        raise ImageDownloadError(
            f"{url}: cannot connect ({type(e).__name__}); check the URL and your network. " + OFFLINE_HINT
        ) from None
    except requests.RequestException as e:
        raise ImageDownloadError(f"{url}: download failed ({e}); check the URL.") from None


def cache_path(url: str, cache_dir: Path) -> Path:
    """Where ``load_image(url, cache_dir=cache_dir)`` keeps its copy of ``url``."""
    suffix = Path(urlparse(url).path).suffix.lower()
    return Path(cache_dir).expanduser() / (
        hashlib.sha256(url.encode()).hexdigest() + (suffix if suffix in IMAGE_EXTENSIONS else ".img")
    )


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- decoding and conversion -----------------------------------------------------------------------


def _decode(data: bytes, name: str, max_pixels: int | None, content_type: str = "") -> Image.Image:
    if not data:
        raise ImageDecodeError(f"{name}: empty data (0 bytes); check that the file or download is complete.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, with the size
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(
            f"{name}: {e} If you trust this file, raise PIL.Image.MAX_IMAGE_PIXELS."
        ) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f"{name}: not an image ({_sniff(data, content_type)}); pass an image file "
            "(JPEG, PNG, WebP, ...), e.g. the direct link to the image, not a web page."
        ) from None
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(f"{name}: corrupt image ({e}); re-download or re-export the file.") from None
    limits = [n for n in (max_pixels, Image.MAX_IMAGE_PIXELS) if n is not None]
    _check_size(image, name, min(limits) if limits else None)
    with image:
        try:
            image.seek(0)  # the first frame of a GIF/TIFF stack
        except EOFError:
            pass
        return _to_rgb(image, name)


def _sniff(data: bytes, content_type: str) -> str:
    head = data[:512].lstrip().lower()
    if "html" in content_type or head.startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page"
    if content_type:
        return f"Content-Type {content_type.split(';')[0]}"
    return "it looks like text" if _is_text(head) else "unknown format"


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_size(image: Image.Image, name: str, limit: int | None) -> Image.Image:
    pixels = image.width * image.height
    if limit is not None and pixels > limit:
        raise ImageTooLargeError(
            f"{name}: {image.width}x{image.height} = {pixels} pixels is more than the limit of {limit} "
            "(a possible decompression bomb); pass a larger max_pixels= (and raise PIL.Image.MAX_IMAGE_PIXELS) "
            "only if you trust this file, or resize it first."
        )
    return image


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """A new, loaded RGB image: EXIF orientation applied, alpha on white, 16-bit scaled to 8 bit."""
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
            image = Image.fromarray(_gray_to_uint8(np.asarray(image)))
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
        return image.convert("RGB")
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(
            f"{name}: truncated or corrupt image ({e}); re-download or re-export the file."
        ) from None


def _gray_to_uint8(array: np.ndarray) -> np.ndarray:
    """16/32-bit integer gray is read as 0..65535 (I;16 and I); float as 0..1 when it fits, else 0..255."""
    if array.dtype.kind == "f":
        scale = 255.0 if np.nanmax(array, initial=0.0) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)
    return (np.clip(array.astype(np.float64), 0, 65535) / 257.0).round().astype(np.uint8)


def _from_array(array: np.ndarray, max_pixels: int | None) -> Image.Image:
    name = _describe(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        hint = (
            " It looks channel-first; use array.transpose(1, 2, 0)."
            if array.ndim == 3 and array.shape[0] in (1, 3, 4)
            else ""
        )
        raise ImageLoadError(f"{name}: expected shape HxW, HxWx3 or HxWx4.{hint}")
    if array.size == 0:
        raise ImageLoadError(f"{name}: the array is empty; pass an image with at least one pixel.")
    if array.dtype == np.uint16:
        array = (array.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < -1e-3 or array.max() > 1 + 1e-3:
            raise ImageLoadError(
                f"{name}: float arrays must hold values in [0, 1] (no NaN); "
                "for 0..255 values use array.astype(np.uint8)."
            )
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageLoadError(
            f"{name}: dtype must be uint8, uint16 or float in [0, 1]; "
            "convert it, e.g. array.astype(np.uint8) for 0..255 values."
        )
    image = Image.fromarray(np.ascontiguousarray(array))  # uint8 HxW / HxWx3 / HxWx4 -> L / RGB / RGBA
    return _to_rgb(_check_size(image, name, max_pixels), name)
