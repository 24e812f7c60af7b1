"""Toy ``llava`` (LLaVA-1.5 style) and ``llava-next`` (LLaVA-NeXT / v1.6-Mistral style) checkpoints.

The recipe follows the real LLaVA in miniature:

* the vision tower is the toy CLIP's vision encoder (features of its second-to-last layer,
  CLS dropped: ``vision_feature_layer=-2``, ``vision_feature_select_strategy="default"``);
* alignment: the vision tower is frozen and the projector and language model learn to describe
  images ("The image shows ...");
* visual instruction tuning: ShapesWorld conversations - describe prompts, every question type
  in any capitalisation, multi-turn with the history in the prompt;
* ``llava-next`` starts from the toy LLaVA's trained parts, swaps to a Mistral language model
  and the ``[INST] ... [/INST]`` template, adds any-res tiles (``image_grid_pinpoints``) and
  learns "Compare these two images." with two images.

``llava-next`` ends with "polish" stages of hard examples for the left-to-right order (``data.hard_training_scenes``:
near-tied x orders, mirror images and x/y transposes, shapes against a margin, from both spec samplers) and
the describe prompts in more wordings (``RECOMBINED_DESCRIBE_PROMPTS``, never a held-out phrasing).

The stages of each model are data (``PLANS``). Unlike LLaVA-1.5, some stages train the vision
tower too (as later LLaVA versions do): the toy CLIP alone is too coarse for the left-to-right
order of objects. While the tower is frozen its features are computed once per training scene
and cached.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .. import shapesworld as sw
from ..catalogue import course_model
from .card import write_model_card
from .data import (
    EVAL_SEED,
    batched,
    eval_scenes,
    hard_training_scenes,
    is_hard,
    on_every_sampler,
    training_scenes,
)
from .tokenizers_llama import build_llama_tokenizer
from .train import fit

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"

# Chat templates. ``content`` may be a string or a list of {"type": "text"/"image"} items; images
# of a user turn come first, one "<image>\n" each, as in the llava-hf templates.
_PARTS = (
    "{%- if message['content'] is string -%}"
    "{%- set parts = [{'type': 'text', 'text': message['content']}] -%}"
    "{%- else -%}{%- set parts = message['content'] -%}{%- endif -%}"
)
LLAVA_CHAT_TEMPLATE = (
    "{%- for message in messages -%}" + _PARTS +
    "{%- if message['role'] == 'system' -%}"
    "{%- for c in parts if c['type'] == 'text' -%}{{ c['text'] + ' ' }}{%- endfor -%}"
    "{%- elif message['role'] == 'user' -%}{{ 'USER: ' }}"
    "{%- for c in parts if c['type'] == 'image' -%}{{ '<image>\n' }}{%- endfor -%}"
    "{%- for c in parts if c['type'] == 'text' -%}{{ c['text'] }}{%- endfor -%}{{ ' ' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ 'ASSISTANT: ' }}"
    "{%- for c in parts if c['type'] == 'text' -%}{% generation %}{{ c['text'] }}{% endgeneration %}{%- endfor -%}"
    "{{ eos_token }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)
MISTRAL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}" + _PARTS +
    "{%- if message['role'] == 'system' -%}"
    "{%- for c in parts if c['type'] == 'text' -%}{{ c['text'] + '\n\n' }}{%- endfor -%}"
    "{%- elif message['role'] == 'user' -%}{{ '[INST] ' }}"
    "{%- for c in parts if c['type'] == 'image' -%}{{ '<image>\n' }}{%- endfor -%}"
    "{%- for c in parts if c['type'] == 'text' -%}{{ c['text'] }}{%- endfor -%}{{ ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ ' ' }}"
    "{%- for c in parts if c['type'] == 'text' -%}{% generation %}{{ c['text'] }}{% endgeneration %}{%- endfor -%}"
    "{{ eos_token }}"
    "{%- endif -%}{%- endfor -%}"
)


@dataclass(frozen=True)
class ChatFormat:
    """How one chat template lays out turns (mirrors the Jinja template, for fast training data)."""

    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    generation_prompt: str
    template: str
    raw_user_suffix: str  # the spacing of the raw prompts that docs and tutorials type by hand

    def render(self, turns: Sequence[tuple[str, str | None]], n_images: int = 1,
               image_turns: Sequence[int] | None = None, raw: bool = False) -> tuple[str, list[tuple[int, int]]]:
        """The prompt text of ``turns`` ((user, assistant) pairs; a final ``None`` reply asks for
        a generation) and the character spans the model must learn (replies with their ``</s>``).
        ``image_turns`` says in which turn each image arrives (default: all ``n_images`` in the first);
        ``raw`` uses the hand-typed spacing (``USER: <image>\n{prompt}\nASSISTANT:``)."""
        image_turns = [0] * n_images if image_turns is None else list(image_turns)
        text, spans = "", []
        for i, (user, reply) in enumerate(turns):
            images = (IMAGE_TOKEN + "\n") * image_turns.count(i)
            text += self.user_prefix + images + user + (self.raw_user_suffix if raw else self.user_suffix)
            if reply is None:
                text += self.generation_prompt
                break
            text += self.assistant_prefix
            start = len(text)
            text += reply + "</s>"
            spans.append((start, len(text)))
        return text, spans


LLAVA_FORMAT = ChatFormat("USER: ", " ", "ASSISTANT: ", "ASSISTANT:", LLAVA_CHAT_TEMPLATE, "\n")
MISTRAL_FORMAT = ChatFormat("[INST] ", " [/INST]", " ", "", MISTRAL_CHAT_TEMPLATE, " [/INST]")
FORMATS = {"llava": LLAVA_FORMAT, "llava-next": MISTRAL_FORMAT}

# Sizes (every width a multiple of 64 so bitsandbytes 4-bit works on CPU).
HIDDEN = 128
INTERMEDIATE = 256
LAYERS = 4
HEADS = 4
MAX_POSITIONS = 2048

REAL = {name: course_model(name).hub_id for name in ("llava", "llava-next")}  # the seed checkpoints (catalogue)


def pinpoints(tile: int) -> list[list[int]]:
    """``image_grid_pinpoints`` for a vision tower of ``tile`` px: the real llava-v1.6 grid (1x2, 2x1,
    2x2, 3x1 and 1x3 tiles of its 336 px tower) scaled to it, so a square ShapesWorld scene gets
    2 x 2 tiles at twice the base resolution. Set in both the model config and the image processor."""
    real = course_model(REAL["llava-next"]).config()
    side = real.vision_config.image_size
    return [[height // side * tile, width // side * tile] for height, width in real.image_grid_pinpoints]


# --- data ----------------------------------------------------------------------------------

def vary_case(text: str, rng: random.Random) -> str:
    """A prompt as a person might type it: as given, lower case, capitals or title case,
    sometimes without the final "?"; "color" sometimes spelt "colour"."""
    r = rng.random()
    if r < 0.2:
        text = text.lower()
    elif r < 0.3:
        text = text.upper()
    elif r < 0.4:
        text = text.title()
    if text.endswith("?") and rng.random() < 0.15:
        text = text[:-1]
    if rng.random() < 0.1:
        text = text.replace("color", "colour").replace("COLOR", "COLOUR").replace("Color", "Colour")
    return text


REPHRASE_SHARE = 0.3  # questions asked in another wording (``sw.QUESTION_PHRASINGS``)


def describe_prompt(rng: random.Random, prompts: Sequence[str] = sw.PUBLIC_DESCRIBE_PROMPTS) -> str:
    """A describe prompt for training: the spec's two or one of ``prompts`` (never a held-out phrasing)."""
    return rng.choice(sw.DESCRIBE_PROMPTS if rng.random() < 0.4 else prompts)


def _normal(prompt: str) -> str:
    return " ".join(prompt.lower().rstrip("?.").split())


def recombined_describe_prompts() -> tuple[str, ...]:
    """The public describe phrasings with their determiner ("this" / "the") and noun ("image" / "picture")
    exchanged ("What's the content of this picture?"), built from the public phrasings' own parts only; a
    result that equals a held-out phrasing (ignoring case and the final "?" / ".") is left out."""
    heldout = {_normal(p) for p in sw.HELDOUT_DESCRIBE_PROMPTS}
    out: list[str] = []
    for prompt in sw.PUBLIC_DESCRIBE_PROMPTS:
        found = next((f"{d} {n}" for d in ("this", "the") for n in ("image", "picture") if f"{d} {n}" in prompt), None)
        variants = [prompt] if found is None else [prompt.replace(found, f"{d} {n}") for d in ("this", "the")
                                                   for n in ("image", "picture")]
        out += [v for v in variants if _normal(v) not in heldout and v not in out]
    return tuple(out)


RECOMBINED_DESCRIBE_PROMPTS = recombined_describe_prompts()


def sample_turns(scene: sw.Scene, rng: random.Random, *, describe_only: bool = False, turns: int = 1,
                 describe_first: float = 0.4, phrasings: bool = False,
                 prompts: Sequence[str] = sw.PUBLIC_DESCRIBE_PROMPTS) -> list[tuple[str, str]]:
    """``turns`` (prompt, reply) pairs about one scene for training; with probability ``describe_first``
    the conversation opens with a describe prompt. With ``phrasings`` prompts come in the public
    phrasings too (describe prompts from ``prompts``, questions from ``sw.QUESTION_PHRASINGS``), else in the spec's."""
    if describe_only:
        prompt = describe_prompt(rng, prompts) if phrasings else rng.choice(sw.DESCRIBE_PROMPTS)
        return [(vary_case(prompt, rng) if rng.random() < 0.3 else prompt, sw.describe_reply(scene))]
    pairs = sw.sample_conversation(scene, turns, rng, describe_first=rng.random() < describe_first)
    if not phrasings:
        return [(vary_case(q, rng), a) for q, a in pairs]
    out = []
    for q, a in pairs:
        if q in sw.DESCRIBE_PROMPTS:
            q = describe_prompt(rng, prompts)
        elif rng.random() < REPHRASE_SHARE:
            q = sw.rephrase(q, rng)
        out.append((vary_case(q, rng), a))
    return out


def image_features(model, pixel_values: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Frozen vision-tower features as LLaVA selects them (layer -2, CLS dropped): (N, 64, width)."""
    feats = []
    layer = model.config.vision_feature_layer
    with torch.no_grad():
        for start in range(0, len(pixel_values), chunk):
            out = model.model.vision_tower(pixel_values[start : start + chunk], output_hidden_states=True)
            feats.append(out.hidden_states[layer][:, 1:].clone())
    return torch.cat(feats)


def render_tensor(scenes: Sequence[sw.Scene]) -> torch.Tensor:
    """Scenes as one uint8 (N, 3, 224, 224) tensor: image processors handle a stacked tensor far
    faster than a list of PIL images, with identical results."""
    arr = np.stack([np.asarray(s.render()) for s in scenes])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def process_scenes(image_processor, scenes: Sequence[sw.Scene], chunk: int = 256, desc: str = "rendering scenes") -> torch.Tensor:
    parts = []
    for start in tqdm(range(0, len(scenes), chunk), desc=desc, leave=False):
        parts.append(image_processor(images=render_tensor(scenes[start : start + chunk]), return_tensors="pt").pixel_values)
    return torch.cat(parts)


# --- tokenizer, processor, model -------------------------------------------------------------

def template_texts(n_scenes: int = 300, seed: int = 777) -> list[str]:
    """Chat-formatted ShapesWorld conversations in both templates, cut at the special tokens
    (text after a special token starts a new piece without a word-start mark, as at run time)."""
    rng = random.Random(seed)
    texts: list[str] = []
    for scene in sw.sample_scenes(n_scenes, seed):
        turns = sample_turns(scene, rng, turns=rng.randint(1, 3))
        for fmt in FORMATS.values():
            text, _ = fmt.render(turns + [(sw.COMPARE_PROMPT, None)], n_images=rng.choice((1, 2)))
            pieces = text.replace(IMAGE_TOKEN, "</s>").split("</s>")
            texts.append(pieces[0])
            texts += ["\n" + p for p in pieces[1:] if p]
    return texts


def build_tokenizer():
    """The toy LLaVA tokenizer (a ``LlamaTokenizer`` with ``<image>`` and ``<pad>`` added)."""
    return build_llama_tokenizer(template_texts(), added_special=(IMAGE_TOKEN, PAD_TOKEN))


def _round_up(n: int, multiple: int = 64) -> int:
    return -(-n // multiple) * multiple


def _text_config(kind: str, tokenizer):
    from transformers import LlamaConfig, MistralConfig

    common = dict(
        vocab_size=_round_up(len(tokenizer)),
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    if kind == "llava":
        return LlamaConfig(**common)
    return MistralConfig(**common, sliding_window=None)


def make_model(name: str, tokenizer, vision_config):
    """A freshly initialised ``LlavaForConditionalGeneration`` / ``LlavaNextForConditionalGeneration``."""
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
    )

    grid = vision_config.image_size // vision_config.patch_size
    common = dict(
        vision_config=vision_config,
        text_config=_text_config(name, tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=grid * grid,
        tie_word_embeddings=False,
    )
    if name == "llava":
        model = LlavaForConditionalGeneration(LlavaConfig(**common))
    else:
        model = LlavaNextForConditionalGeneration(LlavaNextConfig(**common, image_grid_pinpoints=pinpoints(vision_config.image_size)))
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    # No length limit here, as in the real checkpoints: a caller's max_length or max_new_tokens
    # decides (a max_new_tokens here would silently win over a caller's max_length).
    return model


def make_processor(name: str, tokenizer, clip_image_processor, vision_config):
    """``LlavaProcessor`` / ``LlavaNextProcessor`` whose token counts match the model config."""
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor, LlavaProcessor

    common = dict(
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=FORMATS[name].template,
        image_token=IMAGE_TOKEN,
    )
    if name == "llava":
        return LlavaProcessor(image_processor=clip_image_processor, **common)
    size = vision_config.image_size
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_grid_pinpoints=pinpoints(size),
        image_mean=clip_image_processor.image_mean,
        image_std=clip_image_processor.image_std,
    )
    return LlavaNextProcessor(image_processor=image_processor, **common)


def load_clip(clip_dir: Path):
    """The toy CLIP's vision weights and image processor (the LLaVA vision tower)."""
    from transformers import AutoImageProcessor, AutoProcessor, CLIPModel

    if clip_dir is None or not (Path(clip_dir) / "config.json").is_file():
        raise FileNotFoundError(
            f"the toy LLaVA takes its vision tower from the toy CLIP, not found at {clip_dir}; "
            "build it first: vlm-course build-toy-models --only clip"
        )
    clip = CLIPModel.from_pretrained(clip_dir)
    try:
        image_processor = AutoProcessor.from_pretrained(clip_dir).image_processor
    except (OSError, ValueError, TypeError):
        image_processor = AutoImageProcessor.from_pretrained(clip_dir)
    return clip, image_processor


# --- training ---------------------------------------------------------------------------------

@dataclass
class Sample:
    """One training conversation: its turns and the pool indices of its images (in order)."""

    turns: list[tuple[str, str]]
    images: list[int]
    image_turns: list[int] | None = None  # the turn each image arrives in (default: the first)
    raw: bool = False  # hand-typed prompt spacing


class Batcher:
    """Turns conversations into model inputs with image tokens expanded and labels on replies."""

    def __init__(self, tokenizer, fmt: ChatFormat, tokens_per_image: int):
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.tokens_per_image = tokens_per_image
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.pad_id = tokenizer.pad_token_id

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        rendered = [self.fmt.render(s.turns, n_images=len(s.images), image_turns=s.image_turns, raw=s.raw)
                    for s in samples]
        enc = self.tokenizer([t for t, _ in rendered], return_offsets_mapping=True)
        rows_ids, rows_labels = [], []
        for ids, offsets, (_, spans) in zip(enc["input_ids"], enc["offset_mapping"], rendered, strict=True):
            out_ids: list[int] = []
            out_labels: list[int] = []
            for tok, (_, end) in zip(ids, offsets, strict=True):
                if tok == self.image_id:
                    out_ids += [tok] * self.tokens_per_image
                    out_labels += [-100] * self.tokens_per_image
                    continue
                learn = any(s < end <= e for s, e in spans)
                out_ids.append(tok)
                out_labels.append(tok if learn else -100)
            rows_ids.append(out_ids)
            rows_labels.append(out_labels)
        length = max(map(len, rows_ids))
        pad = lambda rows, v: torch.tensor([r + [v] * (length - len(r)) for r in rows])  # noqa: E731
        return {
            "input_ids": pad(rows_ids, self.pad_id),
            "labels": pad(rows_labels, -100),
            "attention_mask": pad([[1] * len(r) for r in rows_ids], 0),
        }


def project_cached(model, feats: torch.Tensor) -> torch.Tensor:
    """Image embeddings for the language model from cached vision features, exactly as the
    model computes them: (n_images, n_patches, tokens, width) -> (n_images * tokens_per_image, hidden)."""
    projected = model.model.multi_modal_projector(feats.flatten(0, 1)).unflatten(0, feats.shape[:2])
    if feats.shape[1] == 1:  # LLaVA: one view per image
        return projected.flatten(0, 2)
    sizes = torch.tensor([[sw.CANVAS_SIZE, sw.CANVAS_SIZE]] * len(feats))
    packed, _ = model.model.pack_image_features(
        list(projected), sizes, model.config.vision_feature_select_strategy, image_newline=model.model.image_newline
    )
    return torch.cat(packed)


def batch_loss(model, batcher: Batcher, feats: torch.Tensor, samples: Sequence[Sample], pixels: torch.Tensor | None = None) -> torch.Tensor:
    """Language-model loss on the replies of ``samples``: vision features from the cache, or
    computed from ``pixels`` (N, views, 3, H, W) through the vision tower when it is trained."""
    batch = batcher(samples)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    idx = [i for s in samples for i in s.images]
    if pixels is not None:
        chosen = pixels[idx]
        out = model.model.vision_tower(chosen.flatten(0, 1).float(), output_hidden_states=True)
        feats_now = out.hidden_states[model.config.vision_feature_layer][:, 1:].unflatten(0, chosen.shape[:2])
        images = project_cached(model, feats_now)
    else:
        images = project_cached(model, feats[idx])
    mask = (batch["input_ids"] == batcher.image_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(mask, images.to(embeds.dtype))
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state
    # Next-token loss on reply positions only (the LM head on just those rows saves time).
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


@dataclass
class Mix:
    """What a training stage draws: describe-only, or conversations; some share of two-image compares."""

    describe_only: bool = False
    compare: float = 0.0
    max_turns: int = 4
    long_share: float = 0.0  # share of batches with longer chats (max_turns + 1 .. long_turns turns)
    long_turns: int = 12
    describe_first: float = 0.4  # share of conversations that open with a describe prompt
    busy_share: float = 0.0  # share of images drawn from the 3-object scenes only (the hardest to describe)
    later_image: float = 0.0  # share of conversations where a second image arrives in a later turn
    raw: float = 0.0  # share of prompts with the hand-typed spacing
    phrasings: bool = False  # prompts in the public phrasings too, not only the spec's
    recombined: bool = False  # with ``phrasings``: describe prompts from ``RECOMBINED_DESCRIBE_PROMPTS``
    hard_share: float = 0.0  # share of images drawn from the hard scenes (``data.is_hard``)

    def draw_batch(self, size: int, scenes: Sequence[sw.Scene], rng: random.Random,
                   busy: Sequence[int] = (), hard: Sequence[int] = ()) -> list[Sample]:
        """``size`` samples; conversations in one batch share their number of turns (little padding).
        ``busy``: pool indices of the 3-object scenes (needed when ``busy_share`` is set); ``hard``: of the
        hard scenes (needed when ``hard_share`` is set)."""
        if rng.random() < self.long_share:
            turns = rng.randint(self.max_turns + 1, self.long_turns)
        else:
            turns = rng.randint(1, self.max_turns)
        return [self.draw(len(scenes), scenes, rng, turns, busy, hard) for _ in range(size)]

    def draw(self, n_pool: int, scenes: Sequence[sw.Scene], rng: random.Random, turns: int = 1,
             busy: Sequence[int] = (), hard: Sequence[int] = ()) -> Sample:
        def pick() -> int:
            if self.hard_share and rng.random() < self.hard_share:
                return rng.choice(hard)
            return rng.choice(busy) if self.busy_share and rng.random() < self.busy_share else rng.randrange(n_pool)

        # Each option draws from ``rng`` only when set, so a stage without it draws what it always drew.
        raw = bool(self.raw) and rng.random() < self.raw
        if rng.random() < self.compare:
            i, j = pick(), pick()
            prompt = sw.COMPARE_PROMPT
            if self.phrasings and rng.random() < 0.6:
                prompt = rng.choice(sw.PUBLIC_COMPARE_PROMPTS)
            prompt = vary_case(prompt, rng) if rng.random() < 0.2 else prompt
            return Sample([(prompt, sw.compare_reply(scenes[i], scenes[j]))], [i, j], raw=raw)
        i = pick()
        prompts = RECOMBINED_DESCRIBE_PROMPTS if self.recombined else sw.PUBLIC_DESCRIBE_PROMPTS
        turns_ = sample_turns(scenes[i], rng, describe_only=self.describe_only, turns=turns,
                              describe_first=self.describe_first, phrasings=self.phrasings, prompts=prompts)
        if self.later_image and rng.random() < self.later_image:  # a new image in a later turn, asked about
            j = pick()
            later = sample_turns(scenes[j], rng, turns=1, describe_first=0.6, phrasings=self.phrasings,
                                 prompts=prompts)
            return Sample(turns_ + later, [i, j], image_turns=[0, len(turns_)], raw=raw)
        return Sample(turns_, [i], raw=raw)


def train_stage(model, batcher, feats, scenes, mix: Mix, *, steps: int, lr: float, batch_size: int, seed: int, desc: str,
                pixels: torch.Tensor | None = None) -> dict:
    """One training stage; with ``pixels`` the vision tower is trained too, else it stays frozen."""
    rng = random.Random(seed)
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(pixels is not None)
    params = [p for p in model.parameters() if p.requires_grad]
    busy = [i for i, s in enumerate(scenes) if len(s.objects) == 3]
    hard = [i for i, s in enumerate(scenes) if is_hard(s)] if mix.hard_share else []

    def loss_fn(step: int) -> torch.Tensor:
        samples = mix.draw_batch(batch_size, scenes, rng, busy, hard)
        return batch_loss(model, batcher, feats, samples, pixels)

    stats = fit(model, loss_fn, steps, lr, params=params, desc=desc)
    _freeze_vision(model)
    return stats


# --- evaluation (through the public API, as a learner would) -----------------------------------

def load(name: str, model_dir: Path):
    """Processor and model of a toy checkpoint folder."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

    cls = LlavaForConditionalGeneration if name == "llava" else LlavaNextForConditionalGeneration
    return AutoProcessor.from_pretrained(model_dir), cls.from_pretrained(model_dir).eval()


def user_message(text: str, images: Sequence[Image.Image]) -> dict:
    return {"role": "user", "content": [*({"type": "image", "image": im} for im in images), {"type": "text", "text": text}]}


def chat(processor, model, conversations: Sequence[list[dict]], max_new_tokens: int = 48, batch_size: int = 32) -> list[str]:
    """Replies to conversations (chat-template messages whose image items hold PIL images)."""
    prompts = [processor.apply_chat_template(c, add_generation_prompt=True) for c in conversations]
    images = [[item["image"] for m in c if not isinstance(m["content"], str) for item in m["content"]
               if item["type"] == "image"] for c in conversations]
    return generate(processor, model, prompts, images, max_new_tokens, batch_size)


def generate(processor, model, prompts: Sequence[str], images: Sequence[Sequence[Image.Image]],
             max_new_tokens: int = 48, batch_size: int = 32) -> list[str]:
    """Greedy replies to prompt strings (``<image>`` where each of a prompt's images goes)."""
    replies: list[str] = []
    for group in batched(list(zip(prompts, images, strict=True)), batch_size):
        inputs = processor(images=[im for _, ims in group for im in ims], text=[p for p, _ in group],
                           padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        replies += processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [" ".join(r.split()) for r in replies]


def _history(turns: Sequence[tuple[str, str]], question: str, images: Sequence[Image.Image],
             later: Sequence[Image.Image] = ()) -> list[dict]:
    """Messages of ``turns`` (images in the first turn) and a final ``question`` with ``later`` images."""
    messages: list[dict] = []
    for i, (q, a) in enumerate(turns):
        messages.append(user_message(q, images if i == 0 else ()))
        messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
    messages.append(user_message(question, (images if not turns else ()) or later))
    return messages


def raw_prompt(name: str, text: str, n_images: int = 1) -> str:
    """The prompt as docs and tutorials type it by hand (``USER: <image>\n{text}\nASSISTANT:``)."""
    return FORMATS[name].render([(text, None)], n_images=n_images, raw=True)[0]


def _cycle(prompts: Sequence[str], n: int) -> list[str]:
    return [prompts[i % len(prompts)] for i in range(n)]


def _right_reply(reply: str, scene: sw.Scene, question: str) -> bool:
    """A describe prompt's reply is exact; a question's carries the right answer word and no other."""
    if question in sw.PUBLIC_DESCRIBE_PROMPTS + sw.HELDOUT_DESCRIBE_PROMPTS:
        return reply == sw.describe_reply(scene)
    return sw.find_answer_word(reply, sw.answer_kind(question)) == sw.answer(scene, question)


def describe_rights(processor, model, scenes: Sequence[sw.Scene], prompts: Sequence[str], raw: str | None = None) -> list[bool]:
    """Whether each scene's reply to its describe prompt (``prompts`` cycled) is exact; with ``raw`` (a model
    name) the prompt is typed by hand (``raw_prompt``) instead of the chat template."""
    asked = _cycle(prompts, len(scenes))
    images = [s.render() for s in scenes]
    if raw:
        replies = generate(processor, model, [raw_prompt(raw, p) for p in asked], [[im] for im in images])
    else:
        replies = chat(processor, model, [[user_message(p, [im])] for p, im in zip(asked, images, strict=True)])
    return [r == sw.describe_reply(s) for r, s in zip(replies, scenes, strict=True)]


def answer_rights(processor, model, scenes: Sequence[sw.Scene], rng: random.Random, reword: bool = False) -> list[bool]:
    """Whether each reply to one question about its scene (typed in any capitalisation; with ``reword`` in
    another wording, ``sw.rephrase``) carries the right answer word and no other of its set."""
    qas = [sw.sample_qa(s, rng) for s in scenes]
    asked = [sw.rephrase(qa.question, rng) if reword else vary_case(qa.question[0].upper() + qa.question[1:], rng)
             for qa in qas]
    replies = chat(processor, model, [[user_message(q, [s.render()])] for q, s in zip(asked, scenes, strict=True)])
    return [sw.find_answer_word(r, qa.kind) == qa.answer for r, qa in zip(replies, qas, strict=True)]


def third_turn_rights(processor, model, scenes: Sequence[sw.Scene], rng: random.Random) -> list[bool]:
    """Whether the reply to the third turn of a conversation about each scene (earlier turns as history) is right."""
    convs = [sw.sample_conversation(s, 3, rng) for s in scenes]
    replies = chat(processor, model, [_history(c[:2], c[2][0], [s.render()]) for c, s in zip(convs, scenes, strict=True)])
    return [_right_reply(r, s, c[2][0]) for r, c, s in zip(replies, convs, scenes, strict=True)]


def later_image_rights(processor, model, firsts: Sequence[sw.Scene], laters: Sequence[sw.Scene], rng: random.Random) -> list[bool]:
    """A first turn describes ``firsts[i]``; the second turn brings ``laters[i]`` and asks to describe it
    (even turns) or a question about it (odd turns): whether that reply is right about the new image."""
    convs = []
    asks = []
    for i, (a, b) in enumerate(zip(firsts, laters, strict=True)):
        ask = rng.choice(sw.DESCRIBE_PROMPTS) if i % 2 == 0 else sw.sample_qa(b, rng).question.capitalize()
        convs.append(_history([(sw.DESCRIBE_PROMPTS[0], sw.describe_reply(a))], ask, [a.render()], [b.render()]))
        asks.append(ask)
    replies = chat(processor, model, convs)
    return [_right_reply(r, b, q) for r, b, q in zip(replies, laters, asks, strict=True)]


def compare_rights(processor, model, firsts: Sequence[sw.Scene], seconds: Sequence[sw.Scene],
                   prompts: Sequence[str] = (sw.COMPARE_PROMPT,)) -> list[bool]:
    """Whether each two-image compare (``prompts`` cycled) is exact."""
    asked = _cycle(prompts, len(firsts))
    replies = chat(processor, model, [[user_message(p, [a.render(), b.render()])] for p, a, b in
                                      zip(asked, firsts, seconds, strict=True)], max_new_tokens=64)
    return [r == sw.compare_reply(a, b) for r, a, b in zip(replies, firsts, seconds, strict=True)]


def evaluate(name: str, model_dir: Path, n: int = 200, sampler: str = "course") -> dict[str, float]:
    """On fresh scenes of ``sampler``: describe exactness (the spec's prompts, the public phrasings,
    the held-out phrasings, the hand-typed raw prompt), right answer words (spec and other wordings,
    single and third turn), a second image arriving in a later turn, compare exactness (llava-next,
    spec and public wordings), and whether a different image changes the reply."""
    processor, model = load(name, Path(model_dir))
    rng = random.Random(EVAL_SEED)
    scenes = eval_scenes(n, sampler=sampler)
    rate = lambda rights: float(np.mean(rights))  # noqa: E731
    scores = {
        "describe_exact": rate(describe_rights(processor, model, scenes, sw.DESCRIBE_PROMPTS)),
        "describe_exact_public_phrasings": rate(describe_rights(processor, model, scenes, sw.PUBLIC_DESCRIBE_PROMPTS[2:])),
        "describe_exact_heldout_phrasings": rate(describe_rights(processor, model, scenes, sw.HELDOUT_DESCRIBE_PROMPTS)),
        "describe_exact_raw_prompt": rate(describe_rights(processor, model, scenes, sw.DESCRIBE_PROMPTS, raw=name)),
    }
    prompts = _cycle(sw.DESCRIBE_PROMPTS, n)
    images = [s.render() for s in scenes]
    replies = chat(processor, model, [[user_message(p, [im])] for p, im in zip(prompts, images, strict=True)])
    swapped = chat(processor, model, [[user_message(p, [images[(i + 1) % n]])] for i, p in enumerate(prompts)])
    differ = [i for i in range(n) if scenes[i].caption != scenes[(i + 1) % n].caption]
    scores["image_changes_reply"] = rate([replies[i] != swapped[i] for i in differ])
    scores["answer_word"] = rate(answer_rights(processor, model, scenes, rng))
    scores["answer_word_other_wordings"] = rate(answer_rights(processor, model, scenes, rng, reword=True))
    scores["third_turn_right"] = rate(third_turn_rights(processor, model, scenes, rng))
    others = eval_scenes(n, offset=1, sampler=sampler)
    scores["later_image_right"] = rate(later_image_rights(processor, model, scenes, others, rng))
    if name == "llava-next":
        scores["compare_exact"] = rate(compare_rights(processor, model, scenes, others))
        scores["compare_exact_public_phrasings"] = rate(
            compare_rights(processor, model, scenes, others, sw.PUBLIC_COMPARE_PROMPTS[1:]))
    return scores


# --- build --------------------------------------------------------------------------------------

TRAIN_SEED = 1_000  # training scenes; evaluation uses data.EVAL_SEED


@dataclass(frozen=True)
class Stage:
    """One training stage of a plan: what it draws, how long, and whether the vision tower learns."""

    key: str
    mix: Mix
    steps: int
    lr: float
    batch: int
    train_vision: bool = False
    about: str = ""  # the model card's description of the stage
    pool: int = 0  # if set: a fresh pool of this many scenes, half from each spec sampler, from this stage on
    hard_pool: bool = False  # with ``pool``: the pool is ``data.hard_training_scenes`` (near ties, mirrors, transposes)

    def describe(self) -> str:
        vision = "vision tower trainable" if self.train_vision else "vision tower frozen (features cached)"
        pool = f"; {self.pool} fresh scenes" if self.pool else ""
        return f"{self.about}{pool}; {vision}; {self.steps} steps, batch {self.batch}, AdamW, OneCycle max lr {self.lr:g}."


_CONVERSATIONS = ("conversations of 1-4 turns about one scene (describe prompts and every question type, typed in any "
                  "capitalisation, sometimes without \"?\" or with \"colour\"; earlier turns in the prompt; loss on "
                  "every reply)")
ROBUST_MIX = Mix(max_turns=3, describe_first=0.5, busy_share=0.2, later_image=0.15, raw=0.15, phrasings=True)
_ROBUST = ("Robustness to how people ask and to any spec sampler: a fresh pool of scenes, half from each spec sampler "
           "(`shapesworld.SAMPLERS`); " + _CONVERSATIONS.replace("1-4", "1-3") + " with the describe prompts drawn "
           "from the public phrasings (`PUBLIC_DESCRIBE_PROMPTS`, never the held-out ones) and 30% of the questions in "
           "other wordings (`QUESTION_PHRASINGS`); 15% of the prompts typed by hand (LLaVA: `USER: <image>\\n{prompt}\\n"
           "ASSISTANT:`); in 15% of the conversations a second image arrives in a later turn, which asks about it; 20% "
           "of the images from the scenes with 3 objects")
POLISH_MIX = Mix(max_turns=2, describe_first=0.7, busy_share=0.2, hard_share=0.3, later_image=0.1, raw=0.1,
                 phrasings=True, recombined=True)
_POLISH = ("Hard examples for the left-to-right order: a fresh pool in which half of the base scenes (half from each "
           "spec sampler) have two centres less than 24 px apart in x (`data.hard_training_scenes`), each scene "
           "followed by its mirror image and its x/y transpose (the same objects, the caption in another order); 30% "
           "of the images drawn from the near ties and the scenes with a shape against a margin (`data.is_hard`), 20% "
           "from those with 3 objects; conversations of 1-2 turns, 70% opening with a describe prompt, the describe "
           "prompts drawn from the public phrasings with their determiner and noun exchanged "
           "(`RECOMBINED_DESCRIBE_PROMPTS`: \"Describe the picture.\"; never a held-out phrasing), 30% of the questions "
           "in other wordings; 10% typed by hand, 10% with a second image in a later turn")
PLANS: dict[str, dict] = {
    "llava": {"pool": 8000, "stages": (
        Stage("align", Mix(describe_only=True), 600, 1e-3, 32,
              about="Alignment: projector + language model learn \"What is shown in this image?\" / \"Describe this "
                    "image.\" -> \"The image shows {caption}.\""),
        Stage("single", Mix(max_turns=1, describe_first=0.6, busy_share=0.3), 2600, 5e-4, 32, train_vision=True,
              about="Visual instruction tuning, single turns first: 60% describe prompts, 40% one question of any "
                    "type (typed in any capitalisation, sometimes without \"?\" or with \"colour\"), 30% of the "
                    "scenes with 3 objects (the hardest to describe); the vision tower learns too, as in later LLaVA "
                    "versions (the toy CLIP alone is too coarse for the left-to-right order of objects)"),
        Stage("instruct", Mix(max_turns=3, long_share=0.05, describe_first=0.5), 1300, 4e-4, 32, train_vision=True,
              about="Visual instruction tuning on " + _CONVERSATIONS.replace("1-4", "1-3") + ", a twentieth of the "
                    "batches 4-12 turns long (so that long chats keep working)"),
        Stage("robust", ROBUST_MIX, 800, 3e-4, 32, train_vision=True, pool=8000, about=_ROBUST),
        # No polish stages here: three of them (as llava-next's, at batch 32) met every describe bar but, trained on
        # 1-2 turn conversations only, broke long chats (the chatbot exercise's 30-turn test: 16/29 answers kept,
        # needs 25), so that checkpoint was not shipped. A polish for llava must keep long conversations in its mix.
    )},
    "llava-next": {"pool": 4000, "stages": (
        Stage("instruct", Mix(compare=0.4, max_turns=2, describe_first=0.6), 200, 5e-4, 16,
              about="Visual instruction tuning with the Mistral template and any-res image tokens (a 2 x 2 grid "
                    "of tiles at twice the base resolution, plus the base view): "
                    + _CONVERSATIONS.replace("1-4", "1-2") + ", 60% opening with a describe prompt, and, in 40% "
                    "of the samples, two images with \"Compare these two images.\" -> \"The first image shows ... "
                    "The second image shows ...\""),
        Stage("compare", Mix(compare=0.5, max_turns=2, busy_share=0.3, describe_first=0.6), 1150, 4e-4, 16,
              train_vision=True,
              about="The same with half of the samples two-image compares and 30% of the images drawn from "
                    "the scenes with 3 objects; the vision tower learns to read the finer tiles"),
        Stage("robust", replace(ROBUST_MIX, compare=0.5, max_turns=2, busy_share=0.3), 1200, 3e-4, 16,
              train_vision=True, pool=4000,
              about=_ROBUST.replace("20%", "30%").replace("1-3 turns", "1-2 turns") + "; half of the samples two-image compares, 60% of those in the "
                                                     "public compare wordings"),
        Stage("polish", replace(POLISH_MIX, compare=0.4), 1500, 3e-4, 16, train_vision=True, pool=4500, hard_pool=True,
              about=_POLISH + "; 40% of the samples two-image compares of those scenes, 60% of them in the public "
                              "compare wordings"),
        Stage("polish-2", replace(POLISH_MIX, compare=0.4), 1500, 2e-4, 16, train_vision=True, pool=4500,
              hard_pool=True, about="The same on another fresh pool of hard examples, at a lower learning rate"),
        Stage("polish-3", replace(POLISH_MIX, compare=0.4), 800, 1.5e-4, 16, train_vision=True, pool=4500,
              hard_pool=True, about="The same on a third fresh pool of hard examples, at a lower learning rate again"),
    )},
}


def smoke_plan(plan: dict) -> dict:
    """``plan`` with a tiny pool and a few steps per stage (CI proves the builder works)."""
    return {"pool": 24, "stages": tuple(replace(st, steps=3, batch=4, pool=24 if st.pool else 0) for st in plan["stages"])}


def tokens_per_image(processor) -> int:
    """How many ``<image>`` tokens the processor puts in for one ShapesWorld image."""
    probe = sw.sample_scene(0).render()
    ids = processor(images=[probe], text=[IMAGE_TOKEN], return_tensors="pt")["input_ids"][0]
    return int((ids == processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)).sum())


def scene_pixels(processor, scenes: Sequence[sw.Scene]) -> torch.Tensor:
    """(N, views, 3, H, W) processed pixels of the training scenes (views: 1 for LLaVA, base + tiles for NeXT)."""
    pixels = process_scenes(processor.image_processor, scenes)
    return pixels.unsqueeze(1) if pixels.dim() == 4 else pixels


def cached_features(model, processor, scenes: Sequence[sw.Scene], pixels: torch.Tensor | None = None) -> torch.Tensor:
    """(N, views, tokens, width) frozen vision features of the training scenes."""
    pixels = scene_pixels(processor, scenes) if pixels is None else pixels
    return image_features(model, pixels.flatten(0, 1)).unflatten(0, pixels.shape[:2])


def _freeze_vision(model) -> None:
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)


def _save(model, processor, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def _architecture(name: str, model, n_image_tokens: int) -> str:
    cfg = model.config
    v, t = cfg.vision_config, cfg.text_config
    lm = "Llama" if name == "llava" else "Mistral"
    lines = [
        f"- `{type(model).__name__}` with the toy CLIP's vision tower: ViT {v.hidden_size} wide x "
        f"{v.num_hidden_layers} layers, {v.image_size} px input, patch {v.patch_size}; features of layer "
        f"{cfg.vision_feature_layer} without CLS (`vision_feature_select_strategy=\"default\"`).",
        f"- Projector: 2-layer MLP (GELU) {v.hidden_size} -> {t.hidden_size} -> {t.hidden_size}.",
        f"- Language model: {lm} {t.hidden_size} wide x {t.num_hidden_layers} layers, {t.num_attention_heads} heads, "
        f"MLP {t.intermediate_size}, vocabulary {t.vocab_size}, context {t.max_position_embeddings} tokens.",
        f"- Tokenizer: `LlamaTokenizer` (BPE with byte fallback, trained on ShapesWorld text); `<image>` is "
        f"token {cfg.image_token_index}, `<pad>` is padding.",
        f"- Image tokens per 224 px ShapesWorld image: {n_image_tokens}.",
    ]
    if name == "llava-next":
        lines.append(f"- Any-res: `image_grid_pinpoints={cfg.image_grid_pinpoints}` (llava-v1.6's grid in "
                     f"{v.image_size} px tiles; base view + tiles, one `image_newline` per row of tile features).")
    template = "`USER: <image>\\n{prompt} ASSISTANT:`" if name == "llava" else "`[INST] <image>\\n{prompt} [/INST]`"
    lines.append(f"- Chat template: {template}; earlier turns stay in the prompt, each reply ends with `</s>`.")
    return "\n".join(lines)


def build(name: str, out_dir: Path, *, smoke: bool = False, deps: dict[str, Path] | None = None,
          resume: tuple[Path, int] | None = None) -> dict:
    """Train the toy ``llava`` or ``llava-next`` checkpoint into ``out_dir`` (see the module docstring).

    ``resume=(folder, k)`` starts from ``folder``, a checkpoint of the same plan's first ``k`` stages (every
    stage draws from its own seeds, so this gives the weights of a full build when the folder holds them)."""
    if name not in FORMATS:
        raise KeyError(f"this builder makes 'llava' and 'llava-next', not {name!r}")
    deps = deps or {}
    out_dir = Path(out_dir)
    torch.manual_seed(0)
    start = time.perf_counter()
    plan = smoke_plan(PLANS[name]) if smoke else PLANS[name]
    info: dict = {"name": name, "smoke": smoke}
    done = 0

    if resume is not None:
        processor, model = load(name, Path(resume[0]))
        model.train()
        model.generation_config.max_new_tokens = None  # older builds set one, which overrode a caller's max_length
        tokenizer, done = processor.tokenizer, resume[1]
        info["resumed_after_stage"] = done
    elif name == "llava":
        tokenizer = build_tokenizer()
        clip, clip_image_processor = load_clip(deps.get("clip"))
        vision_config = clip.config.vision_config
        model = make_model(name, tokenizer, vision_config)
        model.model.vision_tower.load_state_dict(clip.vision_model.state_dict())
    else:
        base_dir = deps.get("llava")
        if base_dir is None or not (Path(base_dir) / "config.json").is_file():
            raise FileNotFoundError(
                f"the toy LLaVA-NeXT starts from the toy LLaVA, not found at {base_dir}; "
                "build it first: vlm-course build-toy-models --only llava"
            )
        base_processor, base = load("llava", Path(base_dir))
        tokenizer, clip_image_processor = base_processor.tokenizer, base_processor.image_processor
        vision_config = base.config.vision_config
        model = make_model(name, tokenizer, vision_config)
        for part in ("vision_tower", "multi_modal_projector", "language_model"):
            getattr(model.model, part).load_state_dict(getattr(base.model, part).state_dict())
        model.lm_head.load_state_dict(base.lm_head.state_dict())
    if resume is None:
        processor = make_processor(name, tokenizer, clip_image_processor, vision_config)
    _freeze_vision(model)

    scenes = pixels = feats = None
    if done == 0:
        scenes = sw.sample_scenes(plan["pool"], TRAIN_SEED + (0 if name == "llava" else 1))
        pixels = scene_pixels(processor, scenes)
        feats = cached_features(model, processor, scenes, pixels)
    n_tokens = tokens_per_image(processor)
    batcher = Batcher(tokenizer, FORMATS[name], n_tokens)

    stages = []
    vision_trained = False
    for k, stage in enumerate(plan["stages"]):
        if k < done:
            continue
        if stage.pool or scenes is None:  # a fresh pool, half from each spec sampler
            draw = hard_training_scenes if stage.hard_pool else training_scenes
            scenes = draw(stage.pool or plan["pool"], TRAIN_SEED + 100 * (k + 1) + (name != "llava"))
            pixels = scene_pixels(processor, scenes)
            feats = None if stage.train_vision else cached_features(model, processor, scenes, pixels)
        elif vision_trained and not stage.train_vision:  # frozen again: cache the features it has now
            feats = cached_features(model, processor, scenes, pixels)
        stages.append(train_stage(model, batcher, feats, scenes, stage.mix, steps=stage.steps, lr=stage.lr,
                                  batch_size=stage.batch, seed=TRAIN_SEED + 10 * (name != "llava") + k,
                                  desc=f"{name} {stage.key}", pixels=pixels if stage.train_vision else None))
        vision_trained = stage.train_vision
    train_seconds = time.perf_counter() - start
    _save(model, processor, out_dir)
    info.update(train_seconds=round(train_seconds, 1), stages=stages)

    scores = on_every_sampler(evaluate, name, out_dir, n=4 if smoke else 200)
    info["scores"] = scores
    write_card(name, out_dir, model, plan, scores, train_seconds, note=resume_note(name, done))
    return info


def resume_note(name: str, done: int) -> str:
    """The card's note on a build that resumed after ``done`` stages (empty for a full build)."""
    if not done:
        return ""
    note = (f"Stages 1-{done} are those of the previous build (the same code and seeds); this checkpoint continues "
            f"from its weights with the later stages, and the training time below is theirs.")
    if name == "llava-next":
        note += (" That previous build started from the toy LLaVA as it was before its robust stage; a fresh "
                 "`build-toy-models` starts from the current toy LLaVA, so its weights differ from these.")
    return note


def recipe_text(name: str, plan: dict) -> str:
    """The model card's recipe section for ``plan`` (see ``PLANS``)."""
    if name == "llava":
        intro = (f"Vision tower copied from the toy CLIP (as LLaVA takes OpenAI's CLIP ViT-L/14); {plan['pool']} "
                 "training scenes (course sampler). While the vision tower is frozen its features are computed once and cached.")
    else:
        intro = ("Starts from the toy LLaVA's trained vision tower, projector and language model (Llama weights "
                 f"loaded into the Mistral architecture, same layout); `image_newline` is new. {plan['pool']} "
                 "training scenes.")
    steps = "\n".join(f"{k}. {st.describe()}" for k, st in enumerate(plan["stages"], 1))
    return f"{intro}\n\n{steps}"


def write_card(name: str, out_dir: Path, model, plan: dict, scores: dict[str, float], train_seconds: float,
               note: str = "") -> Path:
    """README.md of a toy LLaVA checkpoint: architecture, recipe (plus ``note``), measured scores."""
    processor = load(name, out_dir)[0]
    recipe = recipe_text(name, plan) + (f"\n\n{note}" if note else "")
    return write_model_card(
        out_dir, name=name, model=model, real_checkpoint=REAL[name],
        architecture=_architecture(name, model, tokens_per_image(processor)), recipe=recipe,
        scores=scores, train_seconds=train_seconds,
    )
