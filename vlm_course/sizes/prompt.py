"""Memory a prompt needs on top of the weights: image tokens, KV cache and (roughly) activations.

* ``image_tokens``: what one image becomes. CLIP/SigLIP/BLIP: the vision encoder's sequence (BLIP's
  text decoder cross-attends to it); BLIP-2: the Q-Former's query tokens placed in the LM prompt;
  LLaVA: (size/patch)^2 patch tokens (576 for llava-1.5); LLaVA-NeXT: a base view plus any-res
  tiles chosen by the image size, plus one newline token per row (2340 for a 640x480 image).
* ``kv_cache``: exact size of the key/value cache after ``prompt + image + new tokens``
  (self-attention of the language model, plus BLIP's cached cross-attention keys/values).
* ``activations``: a rough upper bound of the prefill's peak working memory (the larger of the
  vision stage and the language stage: hidden states, MLP intermediates and one attention-score
  matrix as the eager / math attention path materialises it). Fused attention kernels need less.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from transformers import PretrainedConfig

from ..catalogue import CourseModel, course_model
from .count import config_of
from .memory import FLOAT_DTYPES, QUANT_BYTES, normalize_dtype

ENCODERS = ("clip", "siglip")
GENERATORS = ("blip", "blip-2", "llava", "llava_next")


@dataclass(frozen=True)
class PromptMemory:
    """Extra memory for one batch of prompts (bytes), and the token counts behind it."""

    image_tokens: int  # tokens one image becomes (see module docstring)
    sequence_length: int  # language-model sequence after generation (0 for encoders)
    kv_cache: int
    activations: int

    @property
    def total(self) -> int:
        return self.kv_cache + self.activations


def kind(config: PretrainedConfig) -> str:
    """``"encoder"`` (CLIP, SigLIP: embeddings) or ``"generator"`` (BLIP, BLIP-2, LLaVA: text out)."""
    if config.model_type in ENCODERS:
        return "encoder"
    if config.model_type in GENERATORS:
        return "generator"
    raise ValueError(f"no size rules for model type {config.model_type!r}; known: {', '.join(ENCODERS + GENERATORS)}")


def _vision_seq(vc: PretrainedConfig, height: int | None = None, width: int | None = None) -> int:
    h = height or vc.image_size
    w = width or vc.image_size
    cls_token = 0 if vc.model_type.startswith("siglip") else 1
    return (h // vc.patch_size) * (w // vc.patch_size) + cls_token


def _llava_next_tokens(config: PretrainedConfig, height: int, width: int) -> int:
    """The processor's own count (``LlavaNextProcessor._get_number_of_features``), fed from the model config."""
    from transformers import LlavaNextProcessor

    vc = config.vision_config
    proc = LlavaNextProcessor.__new__(LlavaNextProcessor)  # only the counting methods are used
    proc.image_processor = SimpleNamespace(image_grid_pinpoints=config.image_grid_pinpoints)
    proc.patch_size = vc.patch_size
    proc.num_additional_image_tokens = 0 if vc.model_type.startswith("siglip") else 1
    n = proc._get_number_of_features(height, width, vc.image_size, vc.image_size)
    return n - 1 if config.vision_feature_select_strategy == "default" else n


def _llava_next_views(config: PretrainedConfig, height: int, width: int) -> int:
    from transformers.image_processing_utils import select_best_resolution

    size = config.vision_config.image_size
    best_h, best_w = select_best_resolution((height, width), config.image_grid_pinpoints)
    return 1 + (best_h // size) * (best_w // size)


def image_tokens(model: str | PretrainedConfig, image_size: tuple[int, int] | None = None) -> int:
    """Tokens one image of ``image_size`` = (height, width) becomes (the model's own size if None)."""
    config = config_of(model)
    vc = config.vision_config
    h, w = image_size or (vc.image_size, vc.image_size)
    if config.model_type in ("clip", "siglip", "blip"):
        return _vision_seq(vc)  # the processor resizes every image to the model's size
    if config.model_type == "blip-2":
        return config.num_query_tokens
    if config.model_type == "llava":
        n = _vision_seq(vc)
        return n - 1 if config.vision_feature_select_strategy == "default" else n
    if config.model_type == "llava_next":
        return _llava_next_tokens(config, h, w)
    raise ValueError(f"no image-token rule for model type {config.model_type!r}")


def _lm_kv_per_token(tc: PretrainedConfig) -> tuple[int, int]:
    """(layers, key+value elements per token and layer) of a language model config."""
    heads = tc.num_attention_heads
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // heads
    kv_heads = getattr(tc, "num_key_value_heads", None) or heads
    return tc.num_hidden_layers, 2 * kv_heads * head_dim


def _stage_bytes(batch: int, seq: int, hidden: int, intermediate: int, heads: int, nbytes: int) -> int:
    """Peak of one transformer layer: residual + normed + q/k/v + MLP intermediates + one score matrix."""
    return batch * nbytes * (seq * (5 * hidden + 3 * intermediate) + heads * seq * seq)


def _class_name(model: str | CourseModel | PretrainedConfig, class_name: str | None) -> str:
    if class_name:
        return class_name
    if isinstance(model, (str, CourseModel)):
        return course_model(model).model_class
    return (getattr(model, "architectures", None) or [""])[0]


def prompt_memory(model: str | PretrainedConfig, *, prompt_tokens: int = 32, new_tokens: int = 64,
                  image_size: tuple[int, int] | None = None, batch: int = 1,
                  dtype: str | torch.dtype = "fp16", class_name: str | None = None) -> PromptMemory:
    """KV cache and rough activation memory for ``batch`` prompts of one image + ``prompt_tokens`` text
    tokens generating ``new_tokens`` (encoders: one image and one text of ``prompt_tokens``).

    ``prompt_tokens`` counts the text ids the processor returns, image placeholders excluded. The cache
    is sized as ``generate`` leaves it: every position except the last generated token's.
    """
    config = config_of(model)
    name = normalize_dtype(dtype)
    nbytes = torch.empty((), dtype=FLOAT_DTYPES["fp16" if name in QUANT_BYTES else name]).element_size()
    vc = config.vision_config
    h, w = image_size or (vc.image_size, vc.image_size)
    n_img = image_tokens(config, (h, w))
    views = _llava_next_views(config, h, w) if config.model_type == "llava_next" else 1
    vision = views * _stage_bytes(batch, _vision_seq(vc), vc.hidden_size, vc.intermediate_size,
                                  vc.num_attention_heads, nbytes)
    tc = config.text_config
    if kind(config) == "encoder":
        text = _stage_bytes(batch, prompt_tokens, tc.hidden_size, tc.intermediate_size, tc.num_attention_heads, nbytes)
        return PromptMemory(image_tokens=n_img, sequence_length=0, kv_cache=0, activations=max(vision, text))

    layers, per_token = _lm_kv_per_token(tc)
    if config.model_type == "blip" and "QuestionAnswering" in _class_name(model, class_name):
        # The decoder starts from [BOS] and cross-attends to the encoded question.
        seq, cached = 1 + new_tokens, new_tokens + prompt_tokens
    elif config.model_type == "blip":
        # generate drops the processor's trailing [SEP]; the decoder cross-attends to the image.
        seq = prompt_tokens - 1 + new_tokens
        cached = seq - 1 + n_img
    else:  # image tokens sit inside the language model's sequence
        seq = prompt_tokens + n_img + new_tokens
        cached = seq - 1
    kv = batch * nbytes * layers * per_token * cached
    inter = getattr(tc, "intermediate_size", None) or getattr(tc, "ffn_dim", None) or 4 * tc.hidden_size
    text = _stage_bytes(batch, seq - new_tokens, tc.hidden_size, inter, tc.num_attention_heads, nbytes)
    text += batch * 4 * tc.vocab_size  # fp32 logits of the last position
    return PromptMemory(image_tokens=n_img, sequence_length=seq, kv_cache=kv, activations=max(vision, text))
