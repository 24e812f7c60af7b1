"""Messages between the trusted test process and the sandboxed worker: JSON over a pipe, never pickle.

A message is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Values that JSON
cannot carry are tagged objects ``{"$t": tag, ...}``:

========== ===================================================================
tag        carries
========== ===================================================================
tuple      a tuple (JSON would turn it into a list)
set        a set or frozenset
dict       a dict whose keys are not all strings (or that holds the key "$t")
bytes      bytes / bytearray, base64
path       a ``pathlib`` path (decoded as ``pathlib.Path``)
image      a PIL image: mode, size, raw pixels (and palette), base64
ndarray    a numeric numpy array: dtype, shape, raw bytes, base64
npscalar   a numpy scalar (``np.float32`` stays ``np.float32``, so type checks see what they would see locally)
tensor     a torch tensor (CPU copy), decoded as a torch tensor
ref        an object that stays in the worker (a class, an instance, a generator...), by number
========== ===================================================================

Decoding never runs code: it builds only the types above, and refuses anything larger than the
caller's limits.
"""

from __future__ import annotations

import base64
import json
import math
import os
import pathlib
import select
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

TAG = "$t"
HEADER = struct.Struct(">I")
MAX_MESSAGE = 256 * 1024 * 1024  # bytes of JSON in one message
MAX_DEPTH = 64
MAX_PIXELS = 64 * 1024 * 1024


class ProtocolError(Exception):
    """A message could not be read, written, encoded or decoded."""


class ChannelClosed(ProtocolError):
    """The other side closed its end of the pipe (it exited or was killed)."""


class ChannelTimeout(ProtocolError):
    """No complete message arrived in time."""


# ---- encoding -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError("base64 payload must be a string")
    return base64.b64decode(text.encode("ascii"), validate=True)


def encode(value: Any, make_ref: Callable[[Any], dict] | None = None, _depth: int = 0) -> Any:
    """Turn ``value`` into JSON-ready data. Objects of other types become ``make_ref(obj)``
    (the worker keeps them and sends a reference), or a TypeError where ``make_ref`` is None."""
    if _depth > MAX_DEPTH:
        raise TypeError(f"value nested deeper than {MAX_DEPTH} levels")
    d = _depth + 1
    np = sys.modules.get("numpy")
    if value is None or isinstance(value, (bool, str)):
        return value
    if np is not None and isinstance(value, np.generic):  # before int/float: np.float64 is a float
        return _encode_npscalar(value, np)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {TAG: "float", "v": repr(float(value))}
    if isinstance(value, list):
        return [encode(v, make_ref, d) for v in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [encode(v, make_ref, d) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: encode(v, make_ref, d) for k, v in value.items()}
        return {TAG: "dict", "v": [[encode(k, make_ref, d), encode(v, make_ref, d)] for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        return {TAG: "set", "frozen": isinstance(value, frozenset), "v": [encode(v, make_ref, d) for v in value]}
    if isinstance(value, (bytes, bytearray)):
        return {TAG: "bytes", "v": _b64(bytes(value))}
    if isinstance(value, pathlib.PurePath):
        return {TAG: "path", "v": str(value)}
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(value, pil.Image):
        return _encode_image(value)
    if np is not None and isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return _encode_array(value)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _encode_tensor(value, torch)
    if make_ref is None:
        raise TypeError(
            f"cannot send a {type(value).__module__}.{type(value).__qualname__} to the sandboxed worker: "
            "only None, bool, int, float, str, bytes, paths, PIL images, numpy arrays, torch tensors, "
            "lists, tuples, sets, dicts and objects the worker returned can cross"
        )
    return make_ref(value)


def _encode_npscalar(value, np) -> dict:
    if value.dtype.kind not in "biufc":
        raise TypeError(f"cannot send a numpy scalar of dtype {value.dtype}")
    return {TAG: "npscalar", "dtype": value.dtype.str, "v": _b64(value.tobytes())}


def _encode_array(value) -> dict:
    import numpy as np

    arr = np.ascontiguousarray(value)
    return {TAG: "ndarray", "dtype": arr.dtype.str, "shape": list(arr.shape), "v": _b64(arr.tobytes())}


def _encode_tensor(value, torch) -> dict:
    t = value.detach().to("cpu")
    dtype = str(t.dtype).removeprefix("torch.")
    if t.dtype == torch.bfloat16:
        t = t.float()
    return {TAG: "tensor", "dtype": dtype, "array": _encode_array(t.contiguous().numpy())}


def _encode_image(image) -> dict:
    out = {TAG: "image", "mode": image.mode, "size": list(image.size), "v": _b64(image.tobytes())}
    if image.mode == "P" and image.getpalette() is not None:
        out["palette"] = image.getpalette()
        out["palette_mode"] = image.palette.mode if image.palette is not None else "RGB"
    return out


# ---- decoding -----------------------------------------------------------------------------------


def decode(data: Any, resolve_ref: Callable[[dict], Any] | None = None, _depth: int = 0) -> Any:
    """The inverse of ``encode``; ``resolve_ref(tagged)`` turns a reference into an object."""
    if _depth > MAX_DEPTH:
        raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
    d = _depth + 1
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, resolve_ref, d) for v in data]
    if not isinstance(data, dict):
        raise ProtocolError(f"unexpected JSON value {type(data).__name__}")
    tag = data.get(TAG)
    if tag is None:
        return {k: decode(v, resolve_ref, d) for k, v in data.items()}
    if tag == "tuple":
        return tuple(decode(v, resolve_ref, d) for v in _items(data))
    if tag == "dict":
        pairs = [_pair(p) for p in _items(data)]
        return {decode(k, resolve_ref, d): decode(v, resolve_ref, d) for k, v in pairs}
    if tag == "set":
        items = [decode(v, resolve_ref, d) for v in _items(data)]
        return frozenset(items) if data.get("frozen") else set(items)
    if tag == "float":
        if data.get("v") not in ("nan", "inf", "-inf"):
            raise ProtocolError("bad float payload")
        return float(data["v"])
    if tag == "bytes":
        return _unb64(data.get("v"))
    if tag == "path":
        if not isinstance(data.get("v"), str):
            raise ProtocolError("bad path payload")
        return pathlib.Path(data["v"])
    if tag == "image":
        return _decode_image(data)
    if tag == "ndarray":
        return _decode_array(data)
    if tag == "npscalar":
        import numpy as np

        dtype = _numeric_dtype(np, data.get("dtype"))
        raw = _unb64(data.get("v"))
        if len(raw) != dtype.itemsize:
            raise ProtocolError("numpy scalar payload has the wrong size")
        return np.frombuffer(raw, dtype=dtype)[0]
    if tag == "tensor":
        import torch

        arr = _decode_array(data.get("array"))
        dtype = getattr(torch, str(data.get("dtype")), None)
        if not isinstance(dtype, torch.dtype):
            raise ProtocolError(f"unknown torch dtype {data.get('dtype')!r}")
        return torch.from_numpy(arr.copy()).to(dtype)
    if tag == "ref":
        if resolve_ref is None:
            raise ProtocolError("unexpected object reference")
        return resolve_ref(data)
    raise ProtocolError(f"unknown tag {tag!r}")


def _items(data: dict) -> list:
    items = data.get("v")
    if not isinstance(items, list):
        raise ProtocolError("tagged container without a list payload")
    return items


def _pair(p: Any) -> tuple:
    if not (isinstance(p, list) and len(p) == 2):
        raise ProtocolError("bad dict item")
    return p[0], p[1]


def _numeric_dtype(np, text: Any):
    try:
        dtype = np.dtype(str(text))
    except TypeError as exc:
        raise ProtocolError(f"bad dtype {text!r}") from exc
    if dtype.kind not in "biufc":
        raise ProtocolError(f"refusing numpy dtype {dtype} (only numeric arrays cross)")
    return dtype


def _decode_array(data: Any):
    import numpy as np

    if not isinstance(data, dict):
        raise ProtocolError("bad array payload")
    dtype = _numeric_dtype(np, data.get("dtype"))
    shape = data.get("shape")
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise ProtocolError("bad array shape")
    raw = _unb64(data.get("v"))
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ProtocolError("array payload does not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _decode_image(data: dict):
    from PIL import Image

    mode, size = data.get("mode"), data.get("size")
    if not (isinstance(mode, str) and isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and n >= 0 for n in size)):
        raise ProtocolError("bad image header")
    if size[0] * size[1] > MAX_PIXELS:
        raise ProtocolError(f"image of {size[0]}x{size[1]} pixels is too large to cross")
    try:
        image = Image.frombytes(mode, tuple(size), _unb64(data.get("v")))
        if "palette" in data:
            image.putpalette(data["palette"], rawmode=str(data.get("palette_mode", "RGB")))
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"bad image payload: {exc}") from exc
    return image


# ---- framing ------------------------------------------------------------------------------------


def dumps(message: dict) -> bytes:
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE}-byte limit")
    return HEADER.pack(len(body)) + body


def send(fd: int, message: dict, timeout: float | None = None) -> None:
    """Write one message to ``fd``; ChannelTimeout if the reader takes no data for ``timeout`` seconds."""
    data = memoryview(dumps(message))
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while data:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([], [fd], [], wait)[1]:
                    raise ChannelTimeout("the other side does not read")
            try:
                n = os.write(fd, data[: 1 << 16])
            except BlockingIOError:
                continue
            data = data[n:]
    except (BrokenPipeError, ConnectionError) as exc:
        raise ChannelClosed(f"the other side closed the pipe ({exc})") from exc
    except OSError as exc:
        raise ChannelClosed(f"cannot write to the pipe ({exc})") from exc


def receive(fd: int, timeout: float | None = None, limit: int = MAX_MESSAGE, max_items: int | None = None) -> dict:
    """Read one message from ``fd``; ChannelTimeout after ``timeout`` seconds, ChannelClosed at EOF.

    ``limit`` caps its bytes and ``max_items`` the values in it (checked before parsing, by counting
    the separators), so a legal but huge answer is refused before it takes the reader's memory."""
    deadline = None if timeout is None else time.monotonic() + timeout
    header = _read_exactly(fd, HEADER.size, deadline)
    (size,) = HEADER.unpack(header)
    if size > limit:
        raise ProtocolError(f"message of {size} bytes exceeds the {limit}-byte limit")
    body = _read_exactly(fd, size, deadline)
    if max_items is not None:
        items = body.count(b",") + body.count(b"[") + body.count(b"{")
        if items > max_items:
            raise ProtocolError(f"message holds about {items} values, more than the limit of {max_items}")
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("message is not a JSON object")
    return message


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    left = n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise ChannelTimeout("no answer in time")
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise ChannelClosed("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
