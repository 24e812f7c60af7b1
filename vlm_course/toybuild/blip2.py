"""Builder of the toy ``blip2`` checkpoint: ``Blip2ForConditionalGeneration`` with an OPT language model.

BLIP-2's recipe in miniature, in three stages:

1. **Language model**: a small ``OPTForCausalLM`` pretrained as a causal LM on ShapesWorld text
   only. Each training sequence opens with a description of a scene in a fixed-length slot of
   ``NUM_QUERY_TOKENS`` tokens (an inventory, one word per object, and a sheet of one-word facts)
   followed by more documents about the same scene (its caption, "Question: ... Answer: ..." texts,
   multi-turn Q&A), so the LM learns to read the text before it. It never sees an image.
2. **Vision encoder**: taken from the trained toy BLIP captioner (``blip-captioning``), as the real
   BLIP-2 takes a ViT pretrained elsewhere (EVA-CLIP). ``BlipVisionModel`` and ``Blip2VisionModel``
   have the same weights, so the copy is exact.
3. **Q-Former training**: vision encoder and LM are FROZEN; only the learned query tokens, the
   Q-Former and ``language_projection`` train, with the frozen LM's loss on captions (no prompt),
   ``"Question: {q} Answer:" -> " {answer}"`` and multi-turn ``blip2_prompt`` texts. The query
   outputs take the place of the description slot that the LM learned to read.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    GenerationConfig,
    OPTConfig,
    OPTForCausalLM,
)

from .. import shapesworld as sw
from .. import toy
from . import data
from .card import write_model_card
from .tokenizers_gpt2 import opt_tokenizer
from .train import fit

REAL_CHECKPOINT = "Salesforce/blip2-opt-2.7b"
VISION_SOURCE = "blip-captioning"  # the toy checkpoint whose trained vision encoder BLIP-2 starts from
NUM_QUERY_TOKENS = 32  # the description slot: inventory (3) + fact sheet (26) + padding; the real BLIP-2 has 32
VOCAB_SIZE = 512  # >= tokenizer size (byte-level BPE + specials + "<image>")
MAX_NEW_TOKENS = 24
LM_MAX_POSITIONS = 512
# Stage 1 (text-only LM): packed sequences of LM_SEQ_LEN tokens.
LM_STEPS = 1500
LM_BATCH = 32
LM_SEQ_LEN = 96
LM_LR = 1e-3  # 2e-3 and above leave this LM stuck on a plateau where it never learns to read its context
LM_ANSWER_WEIGHT = 5.0  # loss weight of answer tokens (the ones that need the context)
LM_FIRST_DOC_CAPTION = 0.7  # share of sequences whose first document after the slot restates the caption
LM_LATER_DOC_CAPTION = 0.15
# Stage 3 (Q-Former).
QFORMER_STEPS = 1200
BATCH = 48
POOL_SIZE = 6000
QFORMER_LR = 1e-3
# Stage-3 batches (one kind per batch): captions (no prompt), single questions, multi-turn prompts.
TASK_MIX = {"caption": 0.55, "question": 0.33, "multi_turn": 0.12}
# Stage 4 (robustness): Q-Former, projection and LM learn together on a fresh pool, half from each spec
# sampler, with captions continuing the public caption prefixes ("a photo of" -> " a red circle").
ROBUST_STEPS = 300
ROBUST_LR = 3e-4
ROBUST_POOL = 6000
ROBUST_MIX = {"caption": 0.35, "prefix": 0.3, "question": 0.25, "multi_turn": 0.1}
TRAIN_SEED = 1234
INVENTORY_PLACES = 3  # the description slot: 3 inventory words, then the 26-word fact sheet, then padding
QFORMER_WIDTH = 128
QFORMER_LAYERS = 2
LM_WIDTH = 128
LM_LAYERS = 4


# --- model and processor layout ------------------------------------------------------------

def make_config(image_token_index: int, vision: dict) -> Blip2Config:
    """The toy's ``Blip2Config``: ``vision`` is the vision config of the toy BLIP captioner whose encoder
    it takes; every width is a multiple of 64 (bitsandbytes 4-bit works on CPU)."""
    vision = Blip2VisionConfig(**{k: vision[k] for k in VISION_KEYS})
    qformer = Blip2QFormerConfig(
        hidden_size=QFORMER_WIDTH, intermediate_size=2 * QFORMER_WIDTH, num_hidden_layers=QFORMER_LAYERS,
        num_attention_heads=4, encoder_hidden_size=vision.hidden_size, cross_attention_frequency=1,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, vocab_size=VOCAB_SIZE, max_position_embeddings=64,
    )
    text = OPTConfig(
        vocab_size=VOCAB_SIZE, hidden_size=LM_WIDTH, num_hidden_layers=LM_LAYERS, ffn_dim=4 * LM_WIDTH,
        num_attention_heads=4, max_position_embeddings=LM_MAX_POSITIONS, word_embed_proj_dim=LM_WIDTH, dropout=0.0,
        pad_token_id=1, bos_token_id=2, eos_token_id=2,
    )
    return Blip2Config(
        vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
        num_query_tokens=NUM_QUERY_TOKENS, image_token_index=image_token_index,
    )


# The settings a BlipVisionConfig and a Blip2VisionConfig share (same meaning, same weights).
VISION_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
               "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout", "initializer_range")


def make_processor(image_processor: BlipImageProcessor) -> Blip2Processor:
    """``Blip2Processor``: the captioner's ``BlipImageProcessor`` settings (the vision encoder saw images
    prepared that way) and the OPT-style tokenizer, with ``num_query_tokens`` set so the processor
    inserts the image placeholder tokens."""
    tokenizer = opt_tokenizer(texts=sw.text_corpus() + _extra_tokenizer_texts())
    # Truncated prompts must leave room for the query tokens and the generated ones within OPT's positions.
    tokenizer.model_max_length = LM_MAX_POSITIONS - NUM_QUERY_TOKENS - MAX_NEW_TOKENS
    image_processor = BlipImageProcessor(
        size=dict(image_processor.size), image_mean=list(image_processor.image_mean),
        image_std=list(image_processor.image_std), resample=image_processor.resample, do_convert_rgb=True,
    )
    return Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=NUM_QUERY_TOKENS)


def _extra_tokenizer_texts() -> list[str]:
    """Lower-case prompts as the lessons type them ("Question: how many ..."), for the BPE merges, and
    scene inventories (so each ``{colour}{shape}`` inventory word becomes one token)."""
    scenes = sw.sample_scenes(100, seed=777)
    texts = [sw.blip2_prompt([], qa.question) + f" {qa.answer}" for s in scenes for qa in sw.questions(s)]
    texts += [inventory(s) for s in sw.sample_scenes(2000, seed=99)]
    return texts


def object_word(color: str, shape: str) -> str:
    """One slot word for a coloured shape (``redsquare``), the same in the inventory and the fact sheet."""
    return f"{color}{shape}"


def inventory(scene: sw.Scene) -> str:
    """A compact scene description, one word per object left to right: " redcircle bluesquare"."""
    return "".join(" " + object_word(o.color, o.shape) for o in sorted(scene.objects, key=lambda o: o.cx))


def fact_sheet(scene: sw.Scene) -> list[str | None]:
    """The scene's facts as one word each, in a fixed order (``None``: nothing there), written so that
    the LM can find a fact by its content rather than only by its place: the number of shapes; the number
    of circles, squares, triangles; the object word (``redsquare``) of the circle, square, triangle and of
    the red, green, blue, yellow object (if just one); the object word of each of the 12 colour-shape
    pairs that is present; the shape word of each shape that is present. To answer "what color is the
    square?" the LM looks for a ``*square`` word, to answer "is there a red square?" for ``redsquare``."""
    def the_only(matching: list[sw.ShapeObject]) -> str | None:
        return object_word(matching[0].color, matching[0].shape) if len(matching) == 1 else None

    objects = scene.objects
    words: list[str | None] = [sw.COUNT_WORDS[len(objects)]]
    words += [sw.COUNT_WORDS[sum(o.shape == shape for o in objects)] for shape in sw.SHAPES]
    words += [the_only([o for o in objects if o.shape == shape]) for shape in sw.SHAPES]
    words += [the_only([o for o in objects if o.color == color]) for color in sw.COLORS]
    words += [object_word(c, s) if any(o.color == c and o.shape == s for o in objects) else None
              for c in sw.COLORS for s in sw.SHAPES]
    words += [shape if any(o.shape == shape for o in objects) else None for shape in sw.SHAPES]
    return words


# --- training texts ------------------------------------------------------------------------

TASKS = tuple(ROBUST_MIX)


def _question_text(qa: sw.QA, rng: random.Random) -> str:
    return qa.question if rng.random() < 0.5 else qa.question[0].upper() + qa.question[1:]


def sample_task(scene: sw.Scene, kind: str, rng: random.Random) -> tuple[str | None, str]:
    """A (prompt, target) pair for ``scene``; prompt ``None`` means captioning (no prompt)."""
    if kind == "caption":
        return None, scene.caption
    if kind == "prefix":
        return rng.choice(sw.PUBLIC_CAPTION_PREFIXES), " " + scene.caption
    history = []
    if kind == "multi_turn":
        for _ in range(rng.randint(1, 2)):
            qa = sw.sample_qa(scene, rng)
            history.append((_question_text(qa, rng), qa.answer))
    qa = sw.sample_qa(scene, rng)
    return sw.blip2_prompt(history, _question_text(qa, rng)), f" {qa.answer}"


class _Encoder:
    """Cached tokenisation of (prompt, target) pairs: BOS + prompt like the processor, target + EOS."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self.cache: dict[tuple[str | None, str], tuple[list[int], list[int]]] = {}

    def __call__(self, prompt: str | None, target: str) -> tuple[list[int], list[int]]:
        key = (prompt, target)
        if key not in self.cache:
            bos, eos = self.tok.bos_token_id, self.tok.eos_token_id
            p = [bos] + (self.tok(prompt, add_special_tokens=False).input_ids if prompt else [])
            t = self.tok(target, add_special_tokens=False).input_ids + [eos]
            self.cache[key] = (p, t)
        return self.cache[key]

    def batch(self, pairs: list[tuple[str | None, str]], prefix: int = 0, prefix_id: int = 0):
        """Right-padded ``input_ids``, ``attention_mask``, ``labels`` (-100 on prefix, prompt, padding)."""
        seqs = [self(p, t) for p, t in pairs]
        width = prefix + max(len(p) + len(t) for p, t in seqs)
        ids = torch.full((len(seqs), width), self.tok.pad_token_id)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        labels = torch.full((len(seqs), width), -100)
        for i, (p, t) in enumerate(seqs):
            n = prefix + len(p) + len(t)
            ids[i, :prefix] = prefix_id
            ids[i, prefix:n] = torch.tensor(p + t)
            mask[i, :n] = 1
            labels[i, prefix + len(p) : n] = torch.tensor(t)
        return ids, mask, labels


# --- stage 1: the language model -------------------------------------------------------------

class _LMText:
    """Stage-1 training sequences (text only): a scene's description in a fixed-length slot, then
    documents about the same scene, each closed by ``</s>``."""

    def __init__(self, enc: _Encoder) -> None:
        self.enc = enc
        self.fill = enc.tok.convert_tokens_to_ids("<s>")  # pads the slot (never scored)
        self.eos = enc.tok.eos_token_id

    def ids(self, text: str) -> list[int]:
        return self.enc(None, text)[1][:-1]  # cached tokens, without the </s> the encoder appends

    def slot(self, scene: sw.Scene) -> list[int]:
        """The description slot, ``NUM_QUERY_TOKENS`` tokens (``<s>`` where nothing applies): the scene's
        inventory (one word per object, left to right; 3 places) and its fact sheet (``fact_sheet``).
        In the image model the Q-Former's query outputs fill exactly these positions."""
        tokens = self.ids(inventory(scene))
        tokens += [self.fill] * (INVENTORY_PLACES - len(tokens))
        tokens += [self.fill if w is None else self.ids(f" {w}")[0] for w in fact_sheet(scene)]
        return tokens + [self.fill] * (NUM_QUERY_TOKENS - len(tokens))

    def qa_document(self, scene: sw.Scene, rng: random.Random) -> tuple[list[int], list[int]]:
        """A ``blip2_prompt`` text (0-2 earlier pairs) with its answer; marks the answer tokens."""
        history = []
        for _ in range(rng.choices((0, 1, 2), (0.6, 0.25, 0.15))[0]):
            qa = sw.sample_qa(scene, rng)
            history.append((_question_text(qa, rng), qa.answer))
        qa = sw.sample_qa(scene, rng)
        prompt = self.ids(sw.blip2_prompt(history, _question_text(qa, rng)))
        answer = self.ids(f" {qa.answer}") + [self.eos]
        return prompt + answer, [0] * len(prompt) + [1] * len(answer)

    def sequence(self, scene: sw.Scene, rng: random.Random, length: int) -> tuple[list[int], list[int]]:
        """``length + 1`` tokens: slot, ``</s>``, then documents (the caption restated or Q&A) until full;
        with a 0/1 mark on the answer tokens."""
        ids = self.slot(scene) + [self.eos]
        marks = [0] * len(ids)
        first = True
        while len(ids) <= length:
            if rng.random() < (LM_FIRST_DOC_CAPTION if first else LM_LATER_DOC_CAPTION):
                doc, mark = self.ids(scene.caption) + [self.eos], None
                mark = [0] * len(doc)
            else:
                doc, mark = self.qa_document(scene, rng)
            ids, marks, first = ids + doc, marks + mark, False
        return ids[: length + 1], marks[: length + 1]


def pretrain_lm(model: Blip2ForConditionalGeneration, enc: _Encoder, steps: int, seed: int) -> dict:
    """Stage 1: the OPT LM as a causal LM on packed ShapesWorld text (every token scored except the
    slot's padding; answer tokens weighted ``LM_ANSWER_WEIGHT``)."""
    lm: OPTForCausalLM = model.language_model
    rng = random.Random(seed)
    scenes = sw.sample_scenes(20000, seed)
    text = _LMText(enc)

    def loss_fn(step: int) -> torch.Tensor:
        rows = [text.sequence(rng.choice(scenes), rng, LM_SEQ_LEN) for _ in range(LM_BATCH)]
        ids = torch.tensor([r[0] for r in rows])
        weight = 1 + (LM_ANSWER_WEIGHT - 1) * torch.tensor([r[1] for r in rows], dtype=torch.float)
        weight = (weight * (ids != text.fill))[:, 1:]
        logits = lm(input_ids=ids).logits[:, :-1]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        return (ce * weight).sum() / weight.sum()

    info = fit(lm, loss_fn, steps, LM_LR, desc="stage 1: OPT LM on text")
    info.update(lm_text_scores(model, enc, n=100 if steps < 50 else 300))
    return info


@torch.no_grad()
def lm_text_scores(model: Blip2ForConditionalGeneration, enc: _Encoder, n: int) -> dict[str, float]:
    """The text-only LM with the true description in the slot (upper bounds for the image model): greedy
    caption after the slot, and the answer to ``"Question: {q} Answer:"`` (first token), on fresh scenes."""
    lm = model.language_model.eval()
    text, tok = _LMText(enc), enc.tok
    scenes = data.eval_scenes(n, offset=9)
    rng = random.Random(data.EVAL_SEED)
    slots = torch.tensor([text.slot(s) + [text.eos] for s in scenes])
    out = lm.generate(input_ids=slots, attention_mask=torch.ones_like(slots), max_new_tokens=14, do_sample=False,
                      eos_token_id=text.eos, pad_token_id=tok.pad_token_id)
    captions = tok.batch_decode(out[:, slots.shape[1]:], skip_special_tokens=True)
    qas = [sw.sample_qa(s, rng) for s in scenes]
    rows = [text.slot(s) + [text.eos] + text.ids(sw.blip2_prompt([], qa.question)) for s, qa in zip(scenes, qas)]
    width = max(map(len, rows))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    nxt = lm(input_ids=ids, attention_mask=(ids != tok.pad_token_id).long()).logits[:, -1].argmax(-1)
    answers = tok.batch_decode(nxt[:, None])
    return {
        "text_caption_copy": sum(c.strip() == s.caption for c, s in zip(captions, scenes)) / n,
        "text_answer_from_caption": sum(a.strip() == qa.answer for a, qa in zip(answers, qas)) / n,
    }


# --- stage 2: the vision encoder ----------------------------------------------------------------

def load_vision_encoder(model: Blip2ForConditionalGeneration, captioner: BlipForConditionalGeneration) -> dict:
    """Stage 2: the vision encoder of the trained toy BLIP captioner, copied weight for weight
    (``BlipVisionModel`` and ``Blip2VisionModel`` have the same layers), checked on a batch of images."""
    missing, unexpected = model.vision_model.load_state_dict(captioner.vision_model.state_dict(), strict=True)
    assert not missing and not unexpected
    pixels = torch.randn(4, 3, model.config.vision_config.image_size, model.config.vision_config.image_size)
    with torch.no_grad():
        diff = (model.vision_model(pixel_values=pixels).last_hidden_state
                - captioner.vision_model(pixel_values=pixels).last_hidden_state).abs().max().item()
    assert diff < 1e-5, diff
    return {"parameters": sum(p.numel() for p in model.vision_model.parameters()), "max_abs_difference": diff}


# --- stage 3: the Q-Former ----------------------------------------------------------------------

def soft_prompt(model: Blip2ForConditionalGeneration, image_embeds: torch.Tensor) -> torch.Tensor:
    """Query tokens -> Q-Former (cross-attending to the image features) -> language projection,
    exactly as ``Blip2ForConditionalGeneration.get_image_features`` does."""
    queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    out = model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=mask)
    return model.language_projection(out.last_hidden_state)


def train_qformer(model: Blip2ForConditionalGeneration, enc: _Encoder, pool: data.ScenePool, steps: int,
                  seed: int, mix: dict[str, float] = TASK_MIX, lr: float = QFORMER_LR, train_lm: bool = False,
                  desc: str = "stage 3: Q-Former") -> dict:
    """Stage 3: vision encoder and LM frozen; query tokens, Q-Former and language projection learn
    from the frozen LM's loss. The frozen encoder's features are computed once per image. With
    ``train_lm`` (stage 4) the LM learns too."""
    model.vision_model.requires_grad_(False)
    model.language_model.requires_grad_(train_lm)
    params = [model.query_tokens, *model.qformer.parameters(), *model.language_projection.parameters()]
    params += list(model.language_model.parameters()) if train_lm else []
    with torch.no_grad():
        feats = torch.cat([model.vision_model(pixel_values=chunk).last_hidden_state
                           for chunk in pool.pixel_values.split(256)])
    rng = random.Random(seed)
    nq, image_id = model.config.num_query_tokens, model.config.image_token_index
    lm = model.language_model
    kinds, weights = zip(*mix.items())

    def loss_fn(step: int) -> torch.Tensor:
        kind = rng.choices(kinds, weights)[0]
        idx = [rng.randrange(len(pool)) for _ in range(BATCH)]
        pairs = [sample_task(pool.scenes[i], kind, rng) for i in idx]
        ids, mask, labels = enc.batch(pairs, prefix=nq, prefix_id=image_id)
        embeds = lm.get_input_embeddings()(ids)
        embeds = torch.cat([soft_prompt(model, feats[idx]), embeds[:, nq:]], dim=1)
        return lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    info = fit(model, loss_fn, steps, lr, params=params, desc=desc)
    model.requires_grad_(True)
    return info


# --- build and evaluate ------------------------------------------------------------------------

def _pixels(processor: Blip2Processor):
    return lambda images: processor.image_processor(images, return_tensors="pt").pixel_values


def build(name: str, out_dir: Path, *, smoke: bool = False, deps: dict[str, Path] | None = None,
          resume: Path | None = None) -> dict:
    """Train the toy BLIP-2 (four stages, fixed seeds) and save model, processor and model card.
    The vision encoder comes from ``deps["blip-captioning"]`` (default: the shipped toy captioner).
    ``resume``: a checkpoint of the first three stages (e.g. the previous build) to run stage 4 from;
    stage 4 draws from its own seeds, so this gives the weights of a full build when the folder holds them."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    torch.manual_seed(TRAIN_SEED)
    if resume is not None:
        processor = Blip2Processor.from_pretrained(resume)
        model = Blip2ForConditionalGeneration.from_pretrained(resume)
        info = {"resumed_after_stage": 3, **_previous_stages(Path(resume))}
        return _finish(name, out_dir, model, processor, info, smoke, start)
    source = Path((deps or {}).get(VISION_SOURCE) or toy.model_path(VISION_SOURCE))
    captioner = BlipForConditionalGeneration.from_pretrained(source).eval()
    processor = make_processor(BlipImageProcessor.from_pretrained(source))
    tok = processor.tokenizer
    image_token_index = tok.convert_tokens_to_ids("<image>")
    model = Blip2ForConditionalGeneration(make_config(image_token_index, captioner.config.vision_config.to_dict()))
    with torch.no_grad():  # transformers initialises the query tokens to zeros; BLIP-2 trains them from N(0, 0.02)
        model.query_tokens.normal_(std=0.02)
    enc = _Encoder(tok)
    steps = (data.SMOKE_STEPS,) * 2 if smoke else (LM_STEPS, QFORMER_STEPS)

    info = {"stage1_lm": pretrain_lm(model, enc, steps[0], TRAIN_SEED + 1)}
    info["stage2_vision"] = load_vision_encoder(model, captioner)
    info["stage2_vision"]["source"] = VISION_SOURCE
    info["image_size"] = model.config.vision_config.image_size
    del captioner
    pool = data.make_pool(64 if smoke else POOL_SIZE, TRAIN_SEED, _pixels(processor))
    info["stage3_qformer"] = train_qformer(model, enc, pool, steps[1], TRAIN_SEED + 3)
    return _finish(name, out_dir, model, processor, info, smoke, start)


def _finish(name: str, out_dir: Path, model: Blip2ForConditionalGeneration, processor: Blip2Processor, info: dict,
            smoke: bool, start: float) -> dict:
    """Stage 4, then save, evaluate on every sampler and write the card."""
    tok = processor.tokenizer
    pool = data.make_pool(64 if smoke else ROBUST_POOL, TRAIN_SEED + 4, _pixels(processor), mixed_samplers=True)
    info["stage4_robust"] = train_qformer(model, _Encoder(tok), pool, data.SMOKE_STEPS if smoke else ROBUST_STEPS,
                                          TRAIN_SEED + 4, mix=ROBUST_MIX, lr=ROBUST_LR, train_lm=True,
                                          desc="stage 4: prefixes and samplers")
    model.generation_config = GenerationConfig(  # no length limit: a caller's max_length / max_new_tokens decides
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    train_seconds = time.perf_counter() - start
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    scores = data.on_every_sampler(evaluate, name, out_dir, n=40 if smoke else 200)
    info["scores"] = scores
    info["seconds_with_evaluation"] = round(time.perf_counter() - start, 1)
    write_model_card(
        out_dir, name=name, model=model, real_checkpoint=REAL_CHECKPOINT,
        architecture=_architecture(model), recipe=_recipe(info), scores=scores, train_seconds=train_seconds,
    )
    return info


def generate_texts(model, processor, images, prompts: list[str] | None = None, **generate_kwargs) -> list[str]:
    """Generate for a batch of images (and optional prompts) and decode only the new tokens."""
    if prompts is None:
        inputs = processor(images=images, return_tensors="pt")
        out = model.generate(**inputs, **generate_kwargs)
        new = out[:, model.config.num_query_tokens + 1 :]
    else:
        inputs = processor(images=images, text=prompts, padding=True, padding_side="left", return_tensors="pt")
        out = model.generate(**inputs, **generate_kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
    return [t.strip() for t in processor.batch_decode(new, skip_special_tokens=True)]


def _clean_answer(text: str) -> str:
    return text.strip().rstrip(".").strip().lower()


SLOT_WORDS = tuple(object_word(c, sh) for c in sw.COLORS for sh in sw.SHAPES)


def leaks_slot_words(text: str) -> bool:
    """Whether generated text contains a word of the LM's internal description slot (``redcircle``)."""
    return any(w in text.lower() for w in SLOT_WORDS)


@torch.no_grad()
def evaluate(name: str, model_dir: Path, n: int = 200, sampler: str = "course") -> dict[str, float]:
    """Exact captions (no prompt, and continuing the public and the held-out caption prefixes), one-word
    answers to ``"Question: {q} Answer:"`` and to multi-turn prompts (the last question), and the share of
    outputs free of internal slot words, on fresh scenes of ``sampler``, through the public API."""
    processor = Blip2Processor.from_pretrained(model_dir)
    model = Blip2ForConditionalGeneration.from_pretrained(model_dir).eval()
    scenes = data.eval_scenes(n, sampler=sampler)
    rng = random.Random(data.EVAL_SEED)
    cap_ok = qa_ok = multi_ok = prefix_ok = heldout_ok = 0
    outputs: list[str] = []
    for start, batch in enumerate(data.batched(scenes, 50)):
        images = [s.render() for s in batch]
        captions = generate_texts(model, processor, images, max_new_tokens=MAX_NEW_TOKENS)
        cap_ok += sum(c == s.caption for c, s in zip(captions, batch))
        for prefixes, counted in ((sw.PUBLIC_CAPTION_PREFIXES, "public"), (sw.HELDOUT_CAPTION_PREFIXES, "heldout")):
            prompts = [prefixes[(50 * start + i) % len(prefixes)] for i in range(len(batch))]
            continued = generate_texts(model, processor, images, prompts, max_new_tokens=MAX_NEW_TOKENS)
            right = sum(c == s.caption for c, s in zip(continued, batch))
            prefix_ok, heldout_ok = (prefix_ok + right, heldout_ok) if counted == "public" else (prefix_ok, heldout_ok + right)
            outputs += continued
        qas = [sw.sample_qa(s, rng) for s in batch]
        answers = generate_texts(model, processor, images, [sw.blip2_prompt([], qa.question) for qa in qas],
                                 max_new_tokens=MAX_NEW_TOKENS)
        qa_ok += sum(_clean_answer(a) == qa.answer for a, qa in zip(answers, qas))
        prompts, truths = [], []
        for s in batch:
            history = [(q.question, q.answer) for q in (sw.sample_qa(s, rng), sw.sample_qa(s, rng))]
            last = sw.sample_qa(s, rng)
            prompts.append(sw.blip2_prompt(history, last.question))
            truths.append(last.answer)
        multi = generate_texts(model, processor, images, prompts, max_new_tokens=MAX_NEW_TOKENS)
        multi_ok += sum(_clean_answer(a) == t for a, t in zip(multi, truths))
        outputs += captions + answers + multi
    return {
        "captions exact (no prompt)": cap_ok / n,
        "captions exact after a public prefix ('a photo of')": prefix_ok / n,
        "captions exact after a held-out prefix": heldout_ok / n,
        "answers ('Question: ... Answer:')": qa_ok / n,
        "answers (multi-turn prompt, last question)": multi_ok / n,
        "outputs free of internal slot words": sum(not leaks_slot_words(o) for o in outputs) / len(outputs),
    }


def _architecture(model: Blip2ForConditionalGeneration) -> str:
    c = model.config
    v, q, t = c.vision_config, c.qformer_config, c.text_config
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return (
        f"- Vision encoder `Blip2VisionModel`: {v.image_size} px input, patch {v.patch_size} "
        f"({(v.image_size // v.patch_size) ** 2} patches + CLS), {v.num_hidden_layers} layers x {v.hidden_size} wide, "
        f"MLP {v.intermediate_size} ({count(model.vision_model):,} parameters).\n"
        f"- Q-Former `Blip2QFormerModel`: {c.num_query_tokens} learned query tokens, {q.num_hidden_layers} layers x "
        f"{q.hidden_size} wide with cross-attention to the image in every layer ({count(model.qformer):,} parameters, "
        f"incl. unused text-side MLPs).\n"
        f"- `language_projection`: {q.hidden_size} -> {t.hidden_size}.\n"
        f"- Language model `OPTForCausalLM`: {t.num_hidden_layers} layers x {t.hidden_size} wide, FFN {t.ffn_dim}, "
        f"vocabulary {t.vocab_size} (tied embeddings; {count(model.language_model):,} parameters).\n"
        f"- Tokenizer: `GPT2Tokenizer` (byte-level BPE, OPT's kind) trained on ShapesWorld text over the full byte "
        f"alphabet, `</s>` as BOS/EOS; `<image>` is token {c.image_token_index} (= `config.image_token_index`) and "
        f"the processor inserts `num_query_tokens` = {c.num_query_tokens} of them before the text.\n"
        f"- Every width is a multiple of 64, so bitsandbytes 4-bit loading and generation work on CPU."
    )


def _previous_stages(folder: Path) -> dict:
    """What a resumed build keeps from the card of the checkpoint it resumes: stages 1-3 of its recipe."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    recipe = card[card.index("## Recipe\n") + len("## Recipe\n"):card.index("\n\nSimplified against")]
    config = Blip2ForConditionalGeneration.config_class.from_pretrained(folder)
    return {"previous_recipe": recipe.strip(), "image_size": config.vision_config.image_size}


def _recipe(info: dict) -> str:
    s4 = info["stage4_robust"]
    stage4 = f"""4. **Robustness: caption prefixes and any spec sampler.** Not in the real recipe: the toy's OPT never read
   web text, so it had no idea how to go on after "a photo of" (it wrote its description-slot words). On a
   fresh pool of {ROBUST_POOL:,} scenes, half from each spec sampler (`shapesworld.SAMPLERS`), the Q-Former,
   `language_projection` and now also OPT learn from captions with no prompt ({ROBUST_MIX['caption']:.0%} of
   batches), captions continuing a public caption prefix (`PUBLIC_CAPTION_PREFIXES`, e.g. "a photo of" ->
   " a red circle"; {ROBUST_MIX['prefix']:.0%}), "Question: ... Answer:" ({ROBUST_MIX['question']:.0%}) and
   multi-turn prompts ({ROBUST_MIX['multi_turn']:.0%}). {s4['steps']} steps, batch {BATCH}, OneCycle max lr
   {ROBUST_LR}, {s4['seconds']:.0f} s, final loss {s4['final_loss']:.3f}."""
    tail = f"""Simplified against the real recipe: the real Q-Former first has a representation-learning stage of its own
(image-text contrastive, matching and image-grounded generation losses, with its BERT text side) before the
generative stage; the toy runs only the generative stage, so the Q-Former's text-side weights are unused.
Images are {info['image_size']} x {info['image_size']} (the processor resizes any input). As with the real
checkpoint, the generation config sets no length: `generate()` makes 20 new tokens unless the caller passes
`max_new_tokens` or `max_length`."""
    if "previous_recipe" in info:
        return f"""{info['previous_recipe']}
{stage4}

Stages 1-3 are those of the previous build (the same code and seeds); this checkpoint continues from its
weights with stage 4.

{tail}"""
    return f"""{_first_stages(info)}
{stage4}

{tail}"""


def _first_stages(info: dict) -> str:
    s1, s2, s3 = info["stage1_lm"], info["stage2_vision"], info["stage3_qformer"]
    return f"""BLIP-2's recipe in miniature: two unimodal models are pretrained first, then both stay FROZEN
while a small Q-Former learns to translate between them.

1. **Language model pretraining (text only).** `OPTForCausalLM` trained as a causal LM on ShapesWorld text.
   Each training sequence of {LM_SEQ_LEN} tokens opens with a description of a scene in a fixed-length slot
   of {NUM_QUERY_TOKENS} tokens: an inventory (one word per object, left to right, e.g. ` redcircle
   bluesquare`; {INVENTORY_PLACES} places) and a fact sheet of 26 one-word facts in a fixed order, written so
   that a fact can be found by its content, not only by its place: the number of shapes; of circles,
   squares, triangles; the object word (` redsquare`) of the circle, square, triangle and of the red, green,
   blue, yellow object where just one; the object word of each colour-shape pair present; the shape word of
   each shape present. To answer "is there a red square?" the LM looks for ` redsquare`, to answer "what
   color is the square?" for a `*square` word (with "yes"/"no" words in fixed places instead, this LM
   answered yes/no questions at chance after 1000 steps). `<s>` fills the places where nothing applies.
   Then come `</s>` and more documents about the same scene, each closed by `</s>` as in OPT's pretraining: the caption (the first document in {LM_FIRST_DOC_CAPTION:.0%} of
   sequences), "Question: {{q}} Answer: {{a}}" texts and multi-turn Q&A in `shapesworld.blip2_prompt` form
   (questions in lower case or capitalised). Real LLMs learn from web text to use earlier text as context; a
   tiny LM learns it only when its texts reward it, hence the same-scene packing (with the caption alone in
   the slot, this LM reached only about 72% right answers in the same time). Answer tokens weigh
   {LM_ANSWER_WEIGHT:g}x in the loss. It never sees an image.
   {s1['steps']} steps, batch {LM_BATCH}, OneCycle max lr {LM_LR}, {s1['seconds']:.0f} s, final loss
   {s1['final_loss']:.3f}. Reading a true description from the slot (text only, fresh scenes), it writes the
   exact caption {s1['text_caption_copy']:.1%} of the time and answers "Question: {{q}} Answer:" right
   {s1['text_answer_from_caption']:.1%} of the time: upper bounds for the image model.
2. **Vision encoder.** The real BLIP-2 takes a ViT pretrained elsewhere (EVA-CLIP ViT-g). The toy takes the
   vision encoder of the trained toy `{s2['source']}` checkpoint (a BLIP captioner trained on ShapesWorld):
   `BlipVisionModel` and `Blip2VisionModel` have the same layers, so its {s2['parameters']:,} weights are
   copied one to one (largest difference of the two encoders' outputs: {s2['max_abs_difference']:.1e}). The
   image processor keeps the captioner's settings.
3. **Q-Former training with both ends frozen** (BLIP-2's generative pretraining stage). Vision encoder and
   OPT are frozen; only the {NUM_QUERY_TOKENS} learned query tokens, the Q-Former and `language_projection`
   learn, from the frozen OPT's LM loss on: captions with no prompt ({TASK_MIX['caption']:.0%} of batches),
   "Question: {{q}} Answer:" -> " {{answer}}" ({TASK_MIX['question']:.0%}) and multi-turn prompts built with
   `shapesworld.blip2_prompt` (1-2 earlier pairs) where the model answers the last question
   ({TASK_MIX['multi_turn']:.0%}). The query outputs sit exactly where the LM's description slot
   was. The frozen encoder's features are computed once per training image ({POOL_SIZE:,} scenes).
   {s3['steps']} steps, batch {BATCH}, OneCycle max lr {QFORMER_LR}, {s3['seconds']:.0f} s, final loss
   {s3['final_loss']:.3f}."""
