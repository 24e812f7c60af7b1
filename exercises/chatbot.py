"""연습 2: 이미지를 보고 대화하는 멀티모달 챗봇 (Exercise 2: a multimodal chatbot).

LLaVA 로 이미지 한 장에 대해 여러 턴 대화하는 챗봇을 완성하세요. ``__init__`` 은 이미 작성되어
있습니다. ``set_image``, ``chat``, ``clear_history`` 가 필수 과제이고, 턴마다 **새 토큰만** 미리
채우는(prefill) KV 캐시 재사용이 도전 과제입니다 (``reuse_cache=True``).

실습실 서버(``VLM_COURSE_SERVER``)가 있으면 ``__init__`` 이 모델 대신 서버에 연결합니다
(``self.server``). 그때는 ``chat`` 이 ``generate`` 대신 대화 전체를 서버에 보냅니다 (TODO 3 참고).

채점(자가 점검)::

    make check                               # 또는: .venv/bin/vlm-course check chatbot

The docstrings below fix the contract that the tests check; the Korean TODO hints show one way
to meet it. Every method raises NotImplementedError until you write it.
"""

from __future__ import annotations

from typing import Any

import torch

from vlm_course.device import pick_device, pick_dtype
from vlm_course.loadplan import plan_if_course_model
from vlm_course.served import ServedModel, server_url_from_env

DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"
# Keys that ``last_stats`` (and every item of ``stats``) must hold.
STAT_KEYS = (
    "turn", "prompt_tokens", "reused_tokens", "tokens_prefilled", "new_tokens", "context_tokens",
    "dropped_turns", "time_to_first_token_s", "total_s", "tokens_per_s",
)


def _todo(method: str) -> NotImplementedError:
    return NotImplementedError(
        f"MultimodalChatbot.{method} 를 아직 작성하지 않았습니다: exercises/chatbot.py 의 "
        f"{method} 에 있는 TODO 를 채우세요. (MultimodalChatbot.{method} is not written yet.)"
    )


class MultimodalChatbot:
    """A chatbot that talks about one image at a time (LLaVA / LLaVA-NeXT checkpoints).

    * ``set_image(image_path)`` starts a **new conversation** about that image: earlier turns
      are forgotten.
    * ``chat(message)`` answers ``message`` about the current image with every earlier turn of
      the conversation in the prompt, and returns the reply as a ``str`` (whitespace stripped).
    * ``clear_history()`` forgets the turns but keeps the image.

    The conversation is kept as chat messages and rendered with the processor's chat template;
    the image sits in the **first** user message only::

        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]},
         {"role": "assistant", "content": [{"type": "text", "text": "The image shows a red circle."}]},
         {"role": "user", "content": [{"type": "text", "text": "How many shapes are there?"}]}]

    State the tests read:

    * ``history``: list of ``(message, reply)`` tuples since the last ``set_image`` /
      ``clear_history``, oldest first (turns dropped for the context limit stay listed here).
    * ``stats``: one dict per turn, ``last_stats``: the latest (``None`` before any turn), with the
      keys of ``STAT_KEYS``:
      ``turn`` (1, 2, ...), ``prompt_tokens`` (tokens of the whole prompt of this turn, image tokens
      included), ``reused_tokens`` (of those, taken from the key/value cache), ``tokens_prefilled``
      (``prompt_tokens - reused_tokens``), ``new_tokens`` (tokens generated, end-of-sequence
      included), ``context_tokens`` (``prompt_tokens + new_tokens``), ``dropped_turns`` (turns
      dropped this turn to fit the context), ``time_to_first_token_s``, ``total_s`` and
      ``tokens_per_s`` (``new_tokens / total_s``).

    Errors: ``chat`` before ``set_image`` -> RuntimeError (say "call set_image first");
    a message that is not a ``str`` -> TypeError; an empty or blank message -> ValueError;
    an image that cannot be read -> ValueError naming it (``vlm_course.images.load_image``
    raises ``ImageLoadError``, a ValueError, for you); a bad generation option (e.g.
    ``max_new_tokens=0``, ``temperature<=0`` with sampling) -> ValueError.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        *,
        reuse_cache: bool = True,
        max_context: int | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        server: str | None = None,
    ) -> None:
        """Load LLaVA (its toy stand-in under the toy profile) and start with no image.

        ``reuse_cache``: keep the key/value cache between turns (``False``: prefill the whole
        conversation every turn). ``max_context``: the context size in tokens to respect (default:
        the model's ``max_position_embeddings``). The generation options are the defaults of
        ``chat`` (greedy decoding unless ``do_sample=True``). ``server``: base URL of an
        OpenAI-compatible server (default ``$VLM_COURSE_SERVER``); then ``self.server`` talks to it,
        only the processor is loaded here and ``self.model`` is None.

        This part is written for you.
        """
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        plan = plan_if_course_model(model_name)  # the load plan of a course model; None for other names
        source = plan.checkpoint if plan is not None else model_name
        self.model_name = model_name
        self.processor = AutoProcessor.from_pretrained(source)
        self.tokenizer = self.processor.tokenizer
        url = server or server_url_from_env()
        self.server = ServedModel(url) if url else None  # the lab server, or None: the model runs here
        if self.server is None:
            here = pick_device()
            kwargs = plan.model_kwargs if plan is not None else {"dtype": pick_dtype(here), "device_map": str(here)}
            self.model = AutoModelForImageTextToText.from_pretrained(source, **kwargs).eval()
            self.device = self.model.device
            config = self.model.config
        else:
            self.device, self.model = None, None
            config = AutoConfig.from_pretrained(source)
        self.image_token_id: int = self.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        model_limit = config.get_text_config().max_position_embeddings
        self.max_context: int = min(max_context or model_limit, model_limit)
        self.reuse_cache = reuse_cache
        self.options: dict[str, Any] = {
            "max_new_tokens": max_new_tokens, "do_sample": do_sample, "temperature": temperature, "top_p": top_p,
        }
        # Your state: add what you need.
        self.image = None                                # the current PIL image
        self.history: list[tuple[str, str]] = []         # (message, reply) pairs
        self.stats: list[dict[str, Any]] = []            # one dict per turn
        self.cache = None                                # the key/value cache of the conversation so far
        self.cache_ids: torch.Tensor | None = None       # the token ids behind self.cache

    @property
    def last_stats(self) -> dict[str, Any] | None:
        """The statistics of the latest turn, or None before the first turn."""
        return self.stats[-1] if self.stats else None

    def set_image(self, image_path) -> None:
        """Start a new conversation about this image (a path, URL, bytes or PIL image).

        Earlier turns, statistics and the key/value cache are dropped.
        """
        # TODO 1) vlm_course.images.load_image(image_path) 로 RGB 이미지를 여세요.
        #         읽을 수 없으면 ImageLoadError(ValueError) 가 나므로 그대로 두면 됩니다.
        # TODO 2) 새 대화를 시작하세요: self.history, self.stats 를 비우고 캐시를 버립니다
        #         (self.cache = None). 캐시는 예전 이미지의 토큰을 담고 있어 더는 쓸 수 없습니다.
        # TODO 3) (도전) 이미지 토큰 수를 정확히 세어 두세요: processor 가 "<image>" 자리에 넣는 토큰 수는
        #         이미지마다 다를 수 있습니다(LLaVA-NeXT). 세는 법:
        #         ids = self.processor(images=[image], text=[self.processor.image_token])["input_ids"]
        #         (ids[0] == self.image_token_id).sum()
        raise _todo("set_image")

    def chat(self, message: str, **options: Any) -> str:
        """Answer ``message`` about the current image, with the earlier turns in the prompt.

        ``options`` override the generation options of the constructor for this turn
        (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``).

        Context limit: when the prompt plus ``max_new_tokens`` would exceed ``self.max_context``,
        drop the oldest turns after the image turn (count the image tokens exactly); never drop
        the image or the newest message. ``history`` still lists every turn.
        """
        # TODO 1) 입력 확인: str 이 아니면 TypeError, 빈 문자열이면 ValueError,
        #         이미지가 없으면 RuntimeError("call set_image(...) first") 를 내세요.
        # TODO 2) 대화 메시지 목록을 만드세요 (클래스 설명의 형식). 이미지는 첫 user 메시지에만 넣습니다.
        #         text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        #         inputs = self.processor(images=[self.image], text=[text], return_tensors="pt").to(self.device)
        # TODO 3) 생성: out = self.model.generate(**inputs, max_new_tokens=..., do_sample=...,
        #                                        return_dict_in_generate=True)
        #         새 토큰만 디코딩하세요: new = out.sequences[0, inputs["input_ids"].shape[1]:]
        #         reply = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        #         서버 모드(self.server 가 None 이 아님)에서는 generate 대신 같은 messages 를 보냅니다:
        #         answer = self.server.complete(messages, image=self.image, max_new_tokens=..., do_sample=...,
        #                                       temperature=..., top_p=...)
        #         reply = answer.text.strip(); 통계에는 answer.prompt_tokens, answer.completion_tokens,
        #         answer.time_to_first_token_s 를 쓰세요. 서버는 매 턴 대화 전체를 받으므로 KV 캐시 재사용
        #         (TODO 5)은 하지 않습니다: reused_tokens=0. 서버 오류(ServerError)가 나면 history 에 아무것도
        #         추가하지 말고 그대로 올려 보내세요 (같은 메시지를 다시 보낼 수 있도록).
        # TODO 4) self.history 에 (message, reply) 를 추가하고, self.stats 에 STAT_KEYS 의 값을 담은
        #         dict 를 추가하세요. 첫 토큰까지의 시간은 generate(streamer=...) 에 put() 이 두 번째로
        #         불리는 순간(첫 번째는 프롬프트)을 재면 됩니다.
        # TODO 5) (도전: KV 캐시 재사용) 이전 턴의 out.cache(transformers 5.x; 예전 이름 past_key_values)와
        #         그 캐시가 담은 토큰 ids(프롬프트 + 생성된 토큰)를 보관하세요. 다음 턴에는 전체 ids 와 함께
        #         generate(..., cache=self.cache) 로 넘기면 transformers 가 캐시에 있는 앞부분을 건너뛰고
        #         새 토큰만 prefill 합니다. 주의할 점:
        #         - 새 ids 가 캐시의 ids 로 시작하는지(접두사가 같은지) 확인하고, 다르면 같은 데까지만
        #           남기세요: self.cache.crop(-(지울 토큰 수)).
        #         - 이미지가 이미 캐시에 있으면 pixel_values 를 다시 넘기지 마세요 (넘기면 "Image features
        #           and image tokens do not match" 오류).
        #         - reuse_cache=False 면 매 턴 캐시 없이 전체를 prefill 합니다. 두 방식의 greedy 답은 같아야 합니다.
        # TODO 6) 문맥 한도: len(ids) + max_new_tokens > self.max_context 이면 이미지 턴 다음의 가장 오래된
        #         턴부터 지우고 다시 렌더링하세요.
        raise _todo("chat")

    def clear_history(self) -> None:
        """Forget every turn (and the key/value cache) but keep the image."""
        # TODO self.history, self.stats 를 비우고 캐시를 버리세요. self.image 는 그대로 둡니다.
        raise _todo("clear_history")
