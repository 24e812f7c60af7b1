"""Exercise 2 (reference): a multi-turn chatbot about one image, for LLaVA and LLaVA-NeXT.

    bot = MultimodalChatbot("llava-hf/llava-1.5-7b-hf")   # the toy LLaVA under the toy profile
    bot.set_image("scene.png")
    bot.chat("Describe this image.")           # -> "The image shows a red circle."
    bot.chat("How many shapes are there?")     # the first turn stays in the prompt
    bot.last_stats                             # tokens prefilled, time to first token, tokens/s

How a turn works
----------------
The conversation is a list of chat messages; the image sits in the first user message. Every turn
renders the whole conversation with the processor's chat template and tokenizes it (the ``<image>``
placeholder expanded to exactly as many image tokens as the processor puts in for this image).
Those ids are what a chatbot without any cache would feed the model. The key/value cache from the
previous ``generate`` holds the conversation up to the end of the last reply, so the turn feeds
``generate`` the full ids *and* the cache: transformers skips the cached positions and prefills only
the new ones (the end of the last reply and the new user message).

Prefix stability: the cache is only valid for the ids it was computed on. Each turn compares the new
ids with the ids behind the cache and keeps the cache up to their longest common prefix (``crop``),
so the reuse is exact even when the chat template re-renders history differently (e.g. a template
that drops the ``</s>`` the model generated, or a reply whose generated tokens are not the
tokenizer's own tokenization of the decoded text): the differing part is simply prefilled again.
``last_stats["reused_tokens"]`` shows how much was reused. Greedy replies are therefore the same
with and without reuse (``reuse_cache=False`` re-prefills everything every turn).

Context limit: when prompt + ``max_new_tokens`` would exceed the model's context, the oldest turns
after the image turn are dropped (down to three quarters of the context, so that the next turns
can reuse the cache again); the image and the newest message are never dropped. If the image turn
is all that is left, it goes too and the image moves to the newest message.

Two backends
------------
By default the model is loaded here (``local``). With ``server="http://host:8000/v1"`` (or
``$VLM_COURSE_SERVER``) the chatbot loads only the processor (to count tokens and fit the context)
and sends each turn to that OpenAI-compatible server (vLLM, ``transformers serve``): the same chat
messages, the image as a data URL, the **whole history resent every turn**. There is no client-side
cache to reuse; a server with prefix caching (vLLM's automatic prefix caching) reuses the
conversation's key/value blocks on its side, and ``reused_tokens`` reports what it says it reused
(0 when it does not say). A turn that fails on the server raises ``vlm_course.served.ServerError``
and leaves the conversation as it was, so the same message can be sent again.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from vlm_course.device import pick_device, pick_dtype
from vlm_course.images import load_image
from vlm_course.profiles import resolve_model
from vlm_course.served import ServedModel, server_url_from_env

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"
# Keys of ``last_stats`` / every item of ``stats``.
STAT_KEYS = (
    "turn", "prompt_tokens", "reused_tokens", "tokens_prefilled", "new_tokens", "context_tokens",
    "dropped_turns", "time_to_first_token_s", "total_s", "tokens_per_s",
)


@dataclass(frozen=True)
class GenerationOptions:
    """Options of one reply. ``do_sample=False`` is greedy decoding (temperature/top_p unused)."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def check(self) -> GenerationOptions:
        """Return self, or raise ValueError naming the bad option."""
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a whole number >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.do_sample, bool):
            raise ValueError(f"do_sample must be True or False, got {self.do_sample!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"temperature must be a number > 0, got {self.temperature!r} (use do_sample=False for greedy)")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be a whole number >= 0 (0 = off), got {self.top_k!r}")
        return self

    def merged(self, **overrides: Any) -> GenerationOptions:
        """These options with ``overrides`` applied (unknown names raise TypeError)."""
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise TypeError(f"unknown generation option(s) {sorted(unknown)}; use {sorted(asdict(self))}")
        return replace(self, **overrides).check()

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=float(self.temperature), top_p=float(self.top_p), top_k=self.top_k or None)
        else:  # silence the "temperature is ignored" warnings of checkpoints that set them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


class _TurnStreamer:
    """A ``generate`` streamer that times the first new token and forwards to an optional streamer."""

    def __init__(self, inner=None) -> None:
        self.inner = inner
        self.puts = 0
        self.first_token_at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        self.puts += 1
        if self.puts == 2 and self.first_token_at is None:  # put #1 is the prompt
            self.first_token_at = time.perf_counter()
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()


def _text_callback_streamer(tokenizer, callback: Callable[[str], None]):
    from transformers import TextStreamer

    class _Callback(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                callback(text)

    return _Callback(tokenizer, skip_prompt=True, skip_special_tokens=True)


class MultimodalChatbot:
    """A chatbot that talks about one image at a time, reusing its key/value cache across turns.

    * ``set_image(image_path)`` starts a **new conversation** about the new image (history and
      cache are dropped). It accepts a path, URL, bytes, numpy array or PIL image.
    * ``chat(message)`` answers ``message`` with every earlier turn of this conversation in the
      prompt. Calling it before ``set_image`` raises RuntimeError; an empty or non-text message
      raises ValueError / TypeError.
    * ``clear_history()`` keeps the image and forgets the turns (the cache is dropped).

    ``history`` lists every (message, reply) pair since the last ``set_image``/``clear_history``;
    ``stats`` holds one dict per turn (keys ``STAT_KEYS``), ``last_stats`` the latest.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        reuse_cache: bool = True,
        max_context: int | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        server: str | None = None,
        _loaded: tuple | None = None,
    ) -> None:
        """Load the checkpoint (through the course profiles; a local folder also works).

        ``server``: base URL of an OpenAI-compatible server to send the turns to instead (default
        ``$VLM_COURSE_SERVER``; ``$VLM_COURSE_SERVER_KEY`` / ``$VLM_COURSE_MODEL`` also apply).
        Only the processor and the config are loaded then.
        """
        self.model_name = model_name
        self.generation = GenerationOptions(max_new_tokens, do_sample, temperature, top_p, top_k).check()
        self.reuse_cache = bool(reuse_cache)
        url = server or (server_url_from_env() if _loaded is None else None)
        self.server: ServedModel | None = ServedModel(url) if url else None
        if _loaded is not None:
            self.model, self.processor = _loaded
            self.device = self.model.device
            config = self.model.config
        else:
            from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

            # A course model loads as the load plan says (dtype, NF4, device), unless the caller
            # names a device or dtype; a folder or another hub id loads as given.
            res = resolve_model(model_name)
            plan = res.plan if device is None and dtype is None else None
            source = res.target
            self.processor = AutoProcessor.from_pretrained(source)
            if self.server is not None:
                self.model, self.device = None, None
                config = AutoConfig.from_pretrained(source)
            elif plan is not None:
                self.model = AutoModelForImageTextToText.from_pretrained(source, **plan.model_kwargs).eval()
                self.device = self.model.device
                config = self.model.config
            else:
                self.device = pick_device(str(device) if device is not None else None)
                self.model = AutoModelForImageTextToText.from_pretrained(
                    source, dtype=pick_dtype(self.device, dtype)
                ).to(self.device).eval()
                config = self.model.config
        self.tokenizer = self.processor.tokenizer
        self._check_processor()
        self.image_token_id: int = self.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        limit = int(getattr(config.get_text_config(), "max_position_embeddings", 0) or 0) or 4096
        if max_context is not None:
            if not isinstance(max_context, int) or max_context < 8:
                raise ValueError(f"max_context must be a whole number of tokens >= 8, got {max_context!r}")
            if max_context > limit:
                raise ValueError(f"max_context={max_context} is more than the model's context ({limit} tokens)")
            limit = max_context
        self.max_context: int = limit
        self._cache_kwarg = "past_key_values"
        if self.model is not None and "cache" in inspect.signature(self.model.forward).parameters:
            self._cache_kwarg = "cache"
        self.image = None
        self._image_inputs: dict[str, torch.Tensor] = {}
        self._n_image_tokens = 0
        self._reset_conversation()

    @property
    def backend(self) -> str:
        """``"local"`` (the model runs here) or ``"server"`` (turns go to ``self.server``)."""
        return "local" if self.server is None else "server"

    @classmethod
    def from_model(cls, model, processor, **options: Any) -> MultimodalChatbot:
        """A chatbot around an already loaded ``model`` and ``processor`` (e.g. a random test model)."""
        return cls(model_name=getattr(model, "name_or_path", "") or type(model).__name__, _loaded=(model, processor), **options)

    # ---- the three methods of the exercise --------------------------------------------------

    def set_image(self, image_path: Any) -> None:
        """Start a new conversation about this image (earlier turns and the cache are dropped).

        Raises ``vlm_course.images.ImageLoadError`` (a ValueError) naming the source when it cannot
        be read as an image.
        """
        image = load_image(image_path)
        probe = self.processor(images=[image], text=[self.processor.image_token], return_tensors="pt")
        n_tokens = int((probe["input_ids"] == self.image_token_id).sum())
        if n_tokens < 1:
            raise RuntimeError("the processor put no image tokens in; check its image_token and patch_size settings")
        self.image = image
        self._n_image_tokens = n_tokens
        self._image_inputs = {} if self.model is None else {
            k: v.to(self.device, self.model.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in probe.items() if k not in ("input_ids", "attention_mask") and isinstance(v, torch.Tensor)
        }
        self._reset_conversation()

    def chat(self, message: str, *, on_text: Callable[[str], None] | None = None, **options: Any) -> str:
        """Answer ``message`` about the current image, with the earlier turns in the prompt.

        ``options`` override the generation options for this turn (``max_new_tokens``,
        ``do_sample``, ``temperature``, ``top_p``, ``top_k``). ``on_text(piece)`` is called with
        each piece of the reply as it is generated (streaming). Returns the reply, stripped.
        """
        if self.server is not None:
            for piece in self._served_turn(message, options):
                if on_text is not None:
                    on_text(piece)
            return self._history[-1][1]
        return self._turn(message, options, _text_callback_streamer(self.tokenizer, on_text) if on_text else None)

    def chat_stream(self, message: str, **options: Any) -> Iterator[str]:
        """Like ``chat``, but yields the reply piece by piece (``TextIteratorStreamer`` + a thread).

        The turn is recorded in ``history`` when the iteration ends; errors are raised here.
        """
        if self.server is not None:
            yield from self._served_turn(message, options)
            return
        from transformers import TextIteratorStreamer

        self._check_message(message)
        self.generation.merged(**options)  # bad options fail before the thread starts
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self._turn(message, options, streamer)
            except BaseException as exc:  # re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        for piece in streamer:
            if piece:
                yield piece
        thread.join()
        if failure:
            raise failure[0]

    def clear_history(self) -> None:
        """Forget every turn but keep the image (the cache is dropped too)."""
        self._reset_conversation()

    # ---- state ------------------------------------------------------------------------------

    @property
    def history(self) -> list[tuple[str, str]]:
        """Every (message, reply) since the last ``set_image`` / ``clear_history``, oldest first."""
        return list(self._history)

    @property
    def last_stats(self) -> dict[str, Any] | None:
        """Statistics of the latest turn (see ``STAT_KEYS``), or None before the first turn."""
        return dict(self.stats[-1]) if self.stats else None

    @property
    def messages(self) -> list[dict]:
        """The chat messages the model sees now (dropped turns left out; the image item holds the image)."""
        return self._messages(self._turns, None, image=self.image)

    def cached_tokens(self) -> int:
        """How many tokens the key/value cache holds now."""
        return int(self._cache.get_seq_length()) if self._cache is not None else 0

    def _reset_conversation(self) -> None:
        self._turns: list[tuple[str, str]] = []  # the turns in the prompt (the first holds the image)
        self._history: list[tuple[str, str]] = []
        self.stats: list[dict[str, Any]] = []
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._cache = None
        self._cache_ids = torch.empty(0, dtype=torch.long)  # ids behind the cache (+ the last reply token)

    # ---- prompt -----------------------------------------------------------------------------

    def _check_processor(self) -> None:
        if getattr(self.processor, "chat_template", None) is None:
            raise ValueError(f"{self.model_name}: the processor has no chat template; use a LLaVA / LLaVA-NeXT chat checkpoint")
        if not getattr(self.processor, "image_token", None):
            raise ValueError(f"{self.model_name}: the processor has no image token; use a LLaVA / LLaVA-NeXT checkpoint")

    def _check_message(self, message: Any) -> None:
        if not isinstance(message, str):
            raise TypeError(f"message must be a str, got {type(message).__name__}")
        if not message.strip():
            raise ValueError("message is empty: type a question or an instruction about the image")
        if self.processor.image_token in message:
            raise ValueError(f"message contains {self.processor.image_token!r}, which marks the image; remove it")
        if self.image is None:
            raise RuntimeError("no image yet: call set_image(path) before chat(message)")

    @staticmethod
    def _messages(turns: list[tuple[str, str]], pending: str | None, image=None) -> list[dict]:
        messages: list[dict] = []
        users = [q for q, _ in turns] + ([pending] if pending is not None else [])
        for i, question in enumerate(users):
            content: list[dict] = [{"type": "image", "image": image}] if i == 0 else []
            messages.append({"role": "user", "content": content + [{"type": "text", "text": question}]})
            if i < len(turns):
                messages.append({"role": "assistant", "content": [{"type": "text", "text": turns[i][1]}]})
        return messages

    def render(self, turns: list[tuple[str, str]], pending: str | None = None) -> str:
        """The chat-template text of ``turns`` (+ ``pending`` with the generation prompt)."""
        return self.processor.apply_chat_template(
            self._messages(turns, pending), tokenize=False, add_generation_prompt=pending is not None
        )

    def encode(self, text: str) -> torch.Tensor:
        """Token ids of a rendered prompt, ``<image>`` expanded as the processor does for this image.

        Same ids as ``processor(images=[image], text=[text])["input_ids"][0]``, without
        processing the image again.
        """
        bos = self.tokenizer.bos_token
        ids = self.tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]
        ids = torch.tensor(ids, dtype=torch.long)
        at = (ids == self.image_token_id).nonzero().flatten().tolist()
        if len(at) != 1:
            raise RuntimeError(f"the rendered prompt holds {len(at)} image placeholders, expected 1")
        i = at[0]
        return torch.cat([ids[:i], ids.new_full((self._n_image_tokens,), self.image_token_id), ids[i + 1 :]])

    def _fit(self, message: str, max_new_tokens: int) -> tuple[torch.Tensor, int]:
        """Ids of the prompt for ``message`` after dropping the oldest turns that do not fit."""
        ids = self.encode(self.render(self._turns, message))
        if len(ids) + max_new_tokens <= self.max_context:
            return ids, 0
        dropped = 0
        target = self.max_context * 3 // 4
        while len(self._turns) > 1 and len(ids) + max_new_tokens > min(target, self.max_context):
            del self._turns[1]  # the oldest turn after the image turn
            dropped += 1
            ids = self.encode(self.render(self._turns, message))
        if len(ids) + max_new_tokens > self.max_context and self._turns:
            dropped += len(self._turns)
            self._turns.clear()  # the image moves to the newest message
            ids = self.encode(self.render(self._turns, message))
        if len(ids) + max_new_tokens > self.max_context:
            raise ValueError(
                f"the image ({self._n_image_tokens} tokens) and this message need {len(ids)} tokens plus up to "
                f"{max_new_tokens} for the reply, but the context holds {self.max_context}: "
                "shorten the message or lower max_new_tokens"
            )
        return ids, dropped

    def _reusable(self, ids: torch.Tensor) -> int:
        """How many leading tokens of ``ids`` the cache can supply (cropping it to that length)."""
        if not self.reuse_cache or self._cache is None:
            self._invalidate_cache()
            return 0
        cached = self.cached_tokens()
        old = self._cache_ids[:cached]
        n = min(len(old), len(ids) - 1)  # at least one token must be fed to get logits
        same = (old[:n] == ids[:n]).to(torch.int8)
        keep = int(same.cumprod(0).sum()) if n else 0
        image_at = (ids == self.image_token_id).nonzero().flatten()
        if len(image_at) and int(image_at[0]) < keep < int(image_at[-1]) + 1:
            keep = int(image_at[0])  # the image's tokens are filled in together or not at all
        if keep == 0 or not getattr(self._cache, "is_croppable", True):
            self._invalidate_cache()
            return 0
        if keep < cached:
            self._cache.crop(keep - cached)  # a negative count removes that many from the end
        return keep

    # ---- one turn ---------------------------------------------------------------------------

    def _turn(self, message: str, options: dict[str, Any], streamer=None) -> str:
        self._check_message(message)
        opts = self.generation.merged(**options)
        started = time.perf_counter()
        ids, dropped = self._fit(message, opts.max_new_tokens)
        reused = self._reusable(ids)
        kwargs: dict[str, Any] = dict(opts.generate_kwargs())
        kwargs["input_ids"] = ids[None].to(self.device)
        kwargs["attention_mask"] = torch.ones_like(kwargs["input_ids"])
        if reused <= int((ids == self.image_token_id).nonzero()[0]):
            kwargs.update(self._image_inputs)  # the image is not in the cache yet
        if self._cache is not None:
            kwargs[self._cache_kwarg] = self._cache
        timer = _TurnStreamer(streamer)
        kwargs.update(streamer=timer, return_dict_in_generate=True, use_cache=True)
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id)
        try:
            with torch.inference_mode():
                out = self.model.generate(**kwargs)
        except BaseException:
            self._invalidate_cache()  # generate may have half-updated it
            raise
        ended = time.perf_counter()
        new = out.sequences[0, len(ids):].cpu()
        cache = out.get("cache") if "cache" in out else out.get("past_key_values")
        self._cache = cache
        self._cache_ids = torch.cat([ids, new])
        reply = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        self._record(message, reply, len(ids), reused, len(new), dropped, started, timer.first_token_at or ended, ended)
        return reply

    def _served_turn(self, message: str, options: dict[str, Any]) -> Iterator[str]:
        """One turn on the server: the whole conversation is sent; yields the reply's pieces."""
        self._check_message(message)
        opts = self.generation.merged(**options)
        started = time.perf_counter()
        ids, dropped = self._fit(message, opts.max_new_tokens)
        messages = self._messages(self._turns, message, image=self.image)
        first: float | None = None
        for piece in self.server.stream(messages, image=self.image, **asdict(opts)):
            first = first or time.perf_counter()
            yield piece
        ended = time.perf_counter()
        answer = self.server.last_reply
        reply = answer.text.strip()
        prompt = answer.prompt_tokens if answer.prompt_tokens is not None else len(ids)
        new = answer.completion_tokens
        if new is None:
            new = len(self.tokenizer(answer.text, add_special_tokens=False)["input_ids"])
        self._record(message, reply, prompt, min(answer.cached_tokens, prompt), new, dropped, started, first or ended, ended)

    def _record(self, message: str, reply: str, prompt: int, reused: int, new: int, dropped: int,
                started: float, first: float, ended: float) -> None:
        self._turns.append((message, reply))
        self._history.append((message, reply))
        total = ended - started
        self.stats.append({
            "turn": len(self._history),
            "prompt_tokens": prompt,
            "reused_tokens": reused,
            "tokens_prefilled": prompt - reused,
            "new_tokens": new,
            "context_tokens": prompt + new,
            "dropped_turns": dropped,
            "time_to_first_token_s": first - started,
            "total_s": total,
            "tokens_per_s": new / total if total > 0 else 0.0,
        })
