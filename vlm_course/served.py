"""Talk to a model on an OpenAI-compatible server (vLLM, ``transformers serve``) instead of loading it.

A lab with one GPU machine sets three variables on every laptop::

    VLM_COURSE_SERVER=http://lab-gpu:8000/v1   # the server's base URL (ends in /v1)
    VLM_COURSE_SERVER_KEY=...                  # only if the server wants an API key
    VLM_COURSE_MODEL=llava-hf/llava-1.5-7b-hf  # only if the server serves several models

and the chat parts of the course send their conversations there. The messages are the same chat
messages a local model gets; the image travels inside the request as a ``data:image/png;base64,...``
URL, shrunk first so that its longer side is at most ``MAX_IMAGE_SIDE`` pixels (LLaVA-NeXT's
largest tile grid; LLaVA-1.5 looks at 336 px anyway).

Every failure is a ``ServerError`` whose message says what went wrong and what to do next
(server down, wrong URL, wrong model name, timeout, overload, a reply cut off). Nothing is kept
from a failed request, so a chat that records a turn only after its reply arrived simply goes on
when the server is back.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vlm_course.images import load_image

SERVER_ENV = "VLM_COURSE_SERVER"
KEY_ENV = "VLM_COURSE_SERVER_KEY"
MODEL_ENV = "VLM_COURSE_MODEL"
MAX_IMAGE_SIDE = 672
DEFAULT_TIMEOUT_S = 120.0
NO_KEY = "no-key"  # the openai client insists on a key; servers started without one ignore it


class ServerError(RuntimeError):
    """The server could not answer; the message names the cause and the fix."""


@dataclass
class Reply:
    """One answer of the server: the text and what it cost."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int
    time_to_first_token_s: float
    total_s: float


def server_url_from_env() -> str | None:
    """``$VLM_COURSE_SERVER`` (stripped), or None when it is unset or empty."""
    return os.environ.get(SERVER_ENV, "").strip() or None


def image_data_url(image: Any, max_side: int = MAX_IMAGE_SIDE) -> str:
    """``image`` (anything ``load_image`` reads) as a PNG data URL, longer side shrunk to ``max_side``."""
    picture = load_image(image)
    if max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(messages: list[dict], image: Any = None) -> list[dict]:
    """Course chat messages -> OpenAI chat messages.

    An ``{"type": "image"}`` item becomes an ``image_url`` item holding ``image`` (or the item's own
    ``"image"``) as a data URL; text items stay; assistant turns become plain strings.
    """
    url_of: dict[int, str] = {}
    out: list[dict] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
            continue
        if message["role"] == "assistant":
            out.append({"role": "assistant", "content": "".join(c.get("text", "") for c in content)})
            continue
        items: list[dict] = []
        for item in content:
            if item["type"] == "image":
                picture = item.get("image", image)
                if picture is None:
                    raise ValueError("an image item has no image: pass image=... (the conversation's picture)")
                if id(picture) not in url_of:
                    url_of[id(picture)] = image_data_url(picture)
                items.append({"type": "image_url", "image_url": {"url": url_of[id(picture)]}})
            elif item["type"] == "text":
                items.append({"type": "text", "text": item["text"]})
            else:
                raise ValueError(f"unsupported content item {item['type']!r}: use 'image' or 'text'")
        out.append({"role": message["role"], "content": items})
    return out


def shorten_data_urls(body: Any, keep: int = 40) -> Any:
    """A copy of a request body with each data URL cut to its start and length (for printing)."""
    if isinstance(body, dict):
        return {k: shorten_data_urls(v, keep) for k, v in body.items()}
    if isinstance(body, list):
        return [shorten_data_urls(v, keep) for v in body]
    if isinstance(body, str) and body.startswith("data:") and len(body) > keep:
        return f"{body[:keep]}... ({len(body)} characters)"
    return body


@dataclass
class ServedModel:
    """A chat model on an OpenAI-compatible server.

    ``url``, ``api_key`` and ``model`` default to ``$VLM_COURSE_SERVER``, ``$VLM_COURSE_SERVER_KEY``
    and ``$VLM_COURSE_MODEL``; without a model name the server's only model is used.
    ``max_retries`` resends a request the server refused as overloaded (429/503) or that failed to
    connect, with the openai client's backoff, before giving up with a ``ServerError``.
    """

    url: str | None = None
    api_key: str | None = None
    model: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    max_retries: int = 2
    _client: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.url = (self.url or server_url_from_env() or "").strip().rstrip("/")
        if not self.url:
            raise ServerError(
                f"no server given: set {SERVER_ENV}=http://HOST:PORT/v1 (the address your instructor "
                "gave, or the line `vlm-course serve` printed), or pass url=..."
            )
        if not self.url.lower().startswith(("http://", "https://")):
            raise ServerError(
                f"{SERVER_ENV}={self.url!r} is not a URL: write it as http://HOST:PORT/v1, e.g. http://192.168.0.10:8000/v1"
            )
        self.api_key = self.api_key or os.environ.get(KEY_ENV, "").strip() or NO_KEY
        self.model = self.model or os.environ.get(MODEL_ENV, "").strip() or None

    @property
    def client(self):
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(base_url=self.url, api_key=self.api_key, timeout=self.timeout,
                                  max_retries=self.max_retries)
        return self._client

    # ---- what is served -----------------------------------------------------------------------

    def models(self) -> list[str]:
        """The model names the server lists."""
        try:
            return [m.id for m in self.client.models.list()]
        except Exception as exc:
            raise self._explain(exc, "listing the models") from exc

    def model_name(self) -> str:
        """The model to ask: the one given, else the server's only model."""
        if self.model is None:
            served = self.models()
            if len(served) != 1:
                raise ServerError(
                    f"the server at {self.url} serves {len(served)} models ({', '.join(served) or 'none'}): "
                    f"choose one with {MODEL_ENV}=NAME"
                )
            self.model = served[0]
        return self.model

    # ---- one request --------------------------------------------------------------------------

    def request(self, messages: list[dict], *, image: Any = None, max_new_tokens: int = 64,
                do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                stream: bool = True) -> dict:
        """The JSON body of ``POST {url}/chat/completions`` for these course chat messages.

        Greedy decoding (``do_sample=False``) is sent as ``temperature=0``. Sampling also sends
        ``generation_config`` (a JSON string, ``transformers serve``'s switch for ``do_sample`` and the
        place for ``top_k``, which is not in the OpenAI schema); vLLM samples whenever
        ``temperature > 0`` and ignores that field.
        """
        body: dict[str, Any] = {
            "model": self.model_name(),
            "messages": openai_messages(messages, image),
            "max_tokens": int(max_new_tokens),
            "temperature": float(temperature) if do_sample else 0.0,
        }
        if do_sample and top_p < 1:
            body["top_p"] = float(top_p)
        if do_sample:
            body["generation_config"] = json.dumps({"do_sample": True, **({"top_k": int(top_k)} if top_k else {})})
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def stream(self, messages: list[dict], *, image: Any = None, **options: Any) -> Iterator[str]:
        """Yield the reply piece by piece; when the iteration ends, ``last_reply`` holds the whole ``Reply``.

        Raises ``ServerError`` (before or during the reply). A reply that stops without the server
        saying why (connection lost) is an error too, never a silently shorter answer.
        """
        self.last_reply: Reply | None = None
        body = self.request(messages, image=image, stream=True, **options)
        extra = {k: body.pop(k) for k in ("generation_config",) if k in body}
        started = time.perf_counter()
        first: float | None = None
        pieces: list[str] = []
        finish: str | None = None
        usage = None
        try:
            chunks = self.client.chat.completions.create(**body, extra_body=extra or None)
            for chunk in chunks:
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        if first is None:
                            first = time.perf_counter()
                        pieces.append(text)
                        yield text
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except GeneratorExit:
            raise
        except Exception as exc:
            raise self._explain(exc, "the reply", partial="".join(pieces)) from exc
        ended = time.perf_counter()
        if finish is None:
            raise ServerError(
                f"the reply from {self.url} was cut off after {len(''.join(pieces))} characters (the server "
                "stopped sending without finishing it, e.g. it was restarted). The turn was not recorded: "
                "send the message again."
            )
        details = getattr(usage, "prompt_tokens_details", None) if usage is not None else None
        self.last_reply = Reply(
            text="".join(pieces),
            finish_reason=finish,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
            time_to_first_token_s=(first or ended) - started,
            total_s=ended - started,
        )

    def complete(self, messages: list[dict], *, image: Any = None,
                 on_text: Callable[[str], None] | None = None, **options: Any) -> Reply:
        """The whole reply (streamed; ``on_text(piece)`` sees each piece as it arrives)."""
        for piece in self.stream(messages, image=image, **options):
            if on_text is not None:
                on_text(piece)
        assert self.last_reply is not None
        return self.last_reply

    def check(self, image: Any, question: str = "Describe this image.", max_new_tokens: int = 16) -> Reply:
        """Ask one question about ``image``: proof that the server answers image questions."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        reply = self.complete(messages, image=image, max_new_tokens=max_new_tokens)
        if not reply.text.strip():
            raise ServerError(f"the server at {self.url} answered an image question with an empty reply")
        return reply

    # ---- errors -------------------------------------------------------------------------------

    def _explain(self, exc: BaseException, doing: str, partial: str = "") -> ServerError:
        """``exc`` as a ServerError that says what to do next."""
        import openai

        where = f"the server at {self.url}"
        keep = " The chat keeps its history: send the message again once the server is back."
        if isinstance(exc, openai.APITimeoutError):
            return ServerError(
                f"{where} did not answer within {self.timeout:g} s ({doing}): it is overloaded or the model is "
                "slow. Wait and send the message again, ask for fewer tokens (max_new_tokens), or allow "
                f"more time (timeout=...)." + keep
            )
        if isinstance(exc, openai.APIConnectionError):
            if _caused_by(exc, socket.gaierror) or "name or service not known" in _chain_text(exc).lower():
                return ServerError(
                    f"cannot find the host of {self.url}: check the host name in {SERVER_ENV} "
                    "(the address your instructor gave, e.g. http://192.168.0.10:8000/v1)."
                )
            if partial or _caused_by_name(exc, ("RemoteProtocolError", "ReadError")):
                return ServerError(
                    f"the reply from {where} was cut off after {len(partial)} characters (connection lost: "
                    "the server stopped or restarted). The turn was not recorded." + keep
                )
            return ServerError(
                f"{where} is not reachable ({doing}): it is not running, or the host/port in {SERVER_ENV} is "
                "wrong. Start it (`vlm-course serve MODEL`) or ask your instructor, and check the address "
                "it printed." + keep
            )
        if isinstance(exc, openai.APIStatusError):
            status, detail = exc.status_code, _detail(exc)
            if status in (429, 503):
                return ServerError(
                    f"{where} is overloaded (HTTP {status}: {detail}) and refused the request after "
                    f"{self.max_retries} retries. Wait a few seconds and send the message again; if it keeps "
                    "happening, the class needs a bigger server or fewer concurrent chats." + keep
                )
            if status in (401, 403):
                return ServerError(
                    f"{where} refused the API key (HTTP {status}): set {KEY_ENV} to the key your instructor gave."
                )
            model = self.model or ""
            if status in (400, 404) and model and model in detail:
                return ServerError(
                    f"{where} does not serve the model {model!r} ({detail}). Set {MODEL_ENV} to a name that "
                    f"`{self.url}/models` lists, or unset it to use the server's only model."
                )
            if status == 404:
                return ServerError(
                    f"{self.url} is not an OpenAI-compatible API (HTTP 404 for {doing}): {SERVER_ENV} must be "
                    "the server's base URL ending in /v1, e.g. http://HOST:8000/v1."
                )
            return ServerError(f"{where} refused the request (HTTP {status}): {detail}")
        if partial or type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            return ServerError(
                f"the reply from {where} was cut off after {len(partial)} characters ({type(exc).__name__}: "
                f"{exc}). The turn was not recorded." + keep
            )
        return ServerError(f"{where}: {type(exc).__name__}: {exc}")


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message") or inner.get("detail") or json.dumps(inner))
        return str(body.get("detail") or inner)
    return str(body or exc)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _caused_by(exc: BaseException, kind: type) -> bool:
    return any(isinstance(e, kind) for e in _causes(exc))


def _caused_by_name(exc: BaseException, names: tuple[str, ...]) -> bool:
    return any(type(e).__name__ in names for e in _causes(exc))


def _chain_text(exc: BaseException) -> str:
    return " | ".join(str(e) for e in _causes(exc))
