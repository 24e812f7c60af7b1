"""Builder of the toy ``blip2`` checkpoint: ``Blip2ForConditionalGeneration`` with an OPT language model.

BLIP-2's recipe in miniature, in three stages:

1. **Language model**: a small ``OPTForCausalLM`` pretrained as a plain causal LM on ShapesWorld
   text only (captions, "Question: ... Answer: ..." texts, multi-turn Q&A). It never sees an image.
2. **Vision encoder**: a small ``Blip2VisionModel`` pretrained with an auxiliary supervised objective
   (from its pooled output, name the colour and shape of each object left to right, or "none"),
   standing in for the contrastively pretrained EVA/CLIP ViT of the real model.
3. **Q-Former alignment**: vision encoder and LM are FROZEN; only the learned query tokens, the
   Q-Former and ``language_projection`` train, with the LM loss on captions (no prompt),
   ``"Question: {q} Answer:" -> " {answer}"`` and a few multi-turn ``blip2_prompt`` texts.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    Blip2QFormerConfig,
    Blip2VisionConfig,
    Blip2VisionModel,
    BlipImageProcessor,
    GenerationConfig,
    OPTConfig,
    OPTForCausalLM,
)

from .. import shapesworld as sw
from . import data
from .card import write_model_card
from .tokenizers_gpt2 import opt_tokenizer
from .train import fit

REAL_CHECKPOINT = "Salesforce/blip2-opt-2.7b"
IMAGE_SIZE = 64
PATCH_SIZE = 8
NUM_QUERY_TOKENS = 12
VOCAB_SIZE = 512  # >= tokenizer size (byte-level BPE + specials + "<image>")
MAX_NEW_TOKENS = 24
# Stage step counts (full build) and batch size.
LM_STEPS = 500
VISION_STEPS = 500
QFORMER_STEPS = 1500
BATCH = 48
POOL_SIZE = 6000
# Stage-3 task mix: captions (no prompt), single questions, multi-turn prompts (answer the last question).
LR = 2e-3
# Stage-3 batches (one kind per batch): captions (no prompt), single questions, multi-turn prompts.
TASK_MIX = {"caption": 0.45, "question": 0.4, "multi_turn": 0.15}
# Stage-1 text documents (one kind per batch).
LM_DOC_MIX = {"caption": 0.35, "question": 0.45, "multi_turn": 0.2}
LM_MAX_DOCS = 4
TRAIN_SEED = 1234
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]  # the real BLIP-2 image processor's (OpenAI CLIP) statistics
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


# --- model and processor layout ------------------------------------------------------------

def make_config(image_token_index: int) -> Blip2Config:
    """The toy's ``Blip2Config``: widths multiples of 64 (bitsandbytes 4-bit works on CPU)."""
    vision = Blip2VisionConfig(
        hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, initializer_range=0.02,
    )
    qformer = Blip2QFormerConfig(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        encoder_hidden_size=64, cross_attention_frequency=1, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, vocab_size=VOCAB_SIZE, max_position_embeddings=64,
    )
    text = OPTConfig(
        vocab_size=VOCAB_SIZE, hidden_size=128, num_hidden_layers=4, ffn_dim=512, num_attention_heads=4,
        max_position_embeddings=512, word_embed_proj_dim=128, dropout=0.0, pad_token_id=1,
        bos_token_id=2, eos_token_id=2,
        # Blip2ForConditionalGeneration.generate calls the inner LM's generate, whose generation config
        # comes from text_config: without this, generate() stops at 20 tokens *including* the prompt.
        max_new_tokens=MAX_NEW_TOKENS,
    )
    return Blip2Config(
        vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
        num_query_tokens=NUM_QUERY_TOKENS, image_token_index=image_token_index,
    )


def make_processor() -> Blip2Processor:
    """``Blip2Processor``: ``BlipImageProcessor`` (any image -> 64 x 64) and the OPT-style tokenizer,
    with ``num_query_tokens`` set so the processor inserts the image placeholder tokens."""
    tokenizer = opt_tokenizer(texts=sw.text_corpus() + _extra_tokenizer_texts())
    image_processor = BlipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=IMAGE_MEAN, image_std=IMAGE_STD,
        do_convert_rgb=True,
    )
    return Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=NUM_QUERY_TOKENS)


def _extra_tokenizer_texts() -> list[str]:
    """Lower-case prompts as the lessons type them ("Question: how many ..."), for the BPE merges."""
    scenes = sw.sample_scenes(100, seed=777)
    return [sw.blip2_prompt([], qa.question) + f" {qa.answer}" for s in scenes for qa in sw.questions(s)]


# --- training texts ------------------------------------------------------------------------

TASKS = ("caption", "question", "multi_turn")


def _question_text(qa: sw.QA, rng: random.Random) -> str:
    return qa.question if rng.random() < 0.5 else qa.question[0].upper() + qa.question[1:]


def sample_task(scene: sw.Scene, kind: str, rng: random.Random) -> tuple[str | None, str]:
    """A (prompt, target) pair for ``scene``; prompt ``None`` means captioning (no prompt)."""
    if kind == "caption":
        return None, scene.caption
    history = []
    if kind == "multi_turn":
        for _ in range(rng.randint(1, 2)):
            qa = sw.sample_qa(scene, rng)
            history.append((_question_text(qa, rng), qa.answer))
    qa = sw.sample_qa(scene, rng)
    return sw.blip2_prompt(history, _question_text(qa, rng)), f" {qa.answer}"


def lm_document(scene: sw.Scene, kind: str, rng: random.Random) -> str:
    """Stage-1 text document about one scene (text only, no image anywhere)."""
    prompt, target = sample_task(scene, kind, rng)
    return (prompt or "") + target


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

def lm_sequence(scene: sw.Scene, enc: "_Encoder", rng: random.Random) -> list[int]:
    """Stage-1 training sequence: 1-4 documents packed one after the other, each opened by ``</s>``
    as in OPT's pretraining. The documents of one sequence are about the same scene (like the texts
    of one web page), so the LM learns to use earlier text as context for later text."""
    kinds, weights = zip(*LM_DOC_MIX.items())
    ids = [enc.tok.bos_token_id]
    for _ in range(rng.randint(1, LM_MAX_DOCS)):
        _, doc = enc(None, lm_document(scene, rng.choices(kinds, weights)[0], rng))
        ids += doc  # document tokens + </s>, which also opens the next document
    return ids


def pretrain_lm(model: Blip2ForConditionalGeneration, enc: _Encoder, steps: int, seed: int) -> dict:
    """Stage 1: the OPT LM as a plain causal LM on packed ShapesWorld text (loss on every token)."""
    lm: OPTForCausalLM = model.language_model
    rng = random.Random(seed)
    scenes = sw.sample_scenes(4000, seed)
    pad = enc.tok.pad_token_id

    def loss_fn(step: int) -> torch.Tensor:
        seqs = [lm_sequence(rng.choice(scenes), enc, rng) for _ in range(BATCH)]
        width = max(map(len, seqs))
        ids = torch.tensor([q + [pad] * (width - len(q)) for q in seqs])
        mask = (torch.arange(width)[None, :] < torch.tensor([len(q) for q in seqs])[:, None]).long()
        return lm(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss

    return fit(lm, loss_fn, steps, LR, desc="stage 1: OPT LM on text")


# --- stage 2: the vision encoder ----------------------------------------------------------------

def _class_id(obj: sw.ShapeObject) -> int:
    return list(sw.COLORS).index(obj.color) * len(sw.SHAPES) + list(sw.SHAPES).index(obj.shape)


def _slot_targets(scenes: list[sw.Scene]) -> torch.Tensor:
    """(B, 3): the class (colour x shape, 0..11) of each object left to right, 12 for no object."""
    out = torch.full((len(scenes), 3), 12)
    for i, s in enumerate(scenes):
        for j, o in enumerate(sorted(s.objects, key=lambda o: o.cx)):
            out[i, j] = _class_id(o)
    return out


def _patch_targets(scene: sw.Scene, grid: int) -> torch.Tensor:
    """(grid*grid,): the class of the object covering most of each patch, 12 for background."""
    label = Image.new("L", (sw.CANVAS_SIZE, sw.CANVAS_SIZE), 0)
    draw = ImageDraw.Draw(label)
    for k, o in enumerate(scene.objects, start=1):
        if o.shape == "circle":
            draw.ellipse(o.bbox(), fill=k)
        elif o.shape == "square":
            draw.rectangle(o.bbox(), fill=k)
        else:
            draw.polygon([(o.cx, o.cy - o.r), (o.cx - o.r, o.cy + o.r), (o.cx + o.r, o.cy + o.r)], fill=k)
    cell = sw.CANVAS_SIZE // grid
    arr = np.asarray(label).reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    counts = np.stack([(arr == k).sum(1) for k in range(len(scene.objects) + 1)], 1)
    counts[:, 0] = cell * cell // 8  # background wins unless an object covers > 1/8 of the patch
    which = counts.argmax(1)
    classes = np.array([12] + [_class_id(o) for o in scene.objects])
    return torch.from_numpy(classes[which])


def pretrain_vision(model: Blip2ForConditionalGeneration, pool: data.ScenePool, steps: int, seed: int) -> dict:
    """Stage 2: the vision encoder with two auxiliary heads (thrown away afterwards): every patch
    names the colour and shape under it, and the pooled output names the objects left to right."""
    vision: Blip2VisionModel = model.vision_model
    width, grid = vision.config.hidden_size, IMAGE_SIZE // PATCH_SIZE
    heads = torch.nn.ModuleDict({"patch": torch.nn.Linear(width, 13), "slots": torch.nn.Linear(width, 3 * 13)})
    patch_targets = torch.stack([_patch_targets(s, grid) for s in pool.scenes])
    slot_targets = _slot_targets(pool.scenes)
    rng = random.Random(seed)
    wrapper = torch.nn.ModuleDict({"vision": vision, "heads": heads})

    def logits(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        out = vision(pixel_values=pool.pixel_values[idx])
        return heads["patch"](out.last_hidden_state[:, 1:]), heads["slots"](out.pooler_output).view(-1, 3, 13)

    def loss_fn(step: int) -> torch.Tensor:
        idx = [rng.randrange(len(pool)) for _ in range(BATCH)]
        patch, slots = logits(idx)
        ce = torch.nn.functional.cross_entropy
        return ce(patch.reshape(-1, 13), patch_targets[idx].reshape(-1)) + ce(
            slots.reshape(-1, 13), slot_targets[idx].reshape(-1))

    info = fit(wrapper, loss_fn, steps, LR, desc="stage 2: vision encoder")
    with torch.no_grad():
        idx = list(range(min(256, len(pool))))
        patch, slots = logits(idx)
        info["patch_accuracy"] = (patch.argmax(-1) == patch_targets[idx]).float().mean().item()
        info["slots_accuracy"] = (slots.argmax(-1) == slot_targets[idx]).all(-1).float().mean().item()
    return info


# --- stage 3: the Q-Former ----------------------------------------------------------------------

def soft_prompt(model: Blip2ForConditionalGeneration, image_embeds: torch.Tensor) -> torch.Tensor:
    """Query tokens -> Q-Former (cross-attending to the image features) -> language projection,
    exactly as ``Blip2ForConditionalGeneration.get_image_features`` does."""
    queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
    mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    out = model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=mask)
    return model.language_projection(out.last_hidden_state)


def train_qformer(model: Blip2ForConditionalGeneration, enc: _Encoder, pool: data.ScenePool, steps: int,
                  seed: int) -> dict:
    """Stage 3: vision encoder and LM frozen; query tokens, Q-Former and language projection learn
    from the frozen LM's loss. The frozen encoder's features are computed once per image."""
    model.vision_model.requires_grad_(False)
    model.language_model.requires_grad_(False)
    params = [model.query_tokens, *model.qformer.parameters(), *model.language_projection.parameters()]
    with torch.no_grad():
        feats = torch.cat([model.vision_model(pixel_values=chunk).last_hidden_state
                           for chunk in pool.pixel_values.split(256)])
    rng = random.Random(seed)
    nq, image_id = model.config.num_query_tokens, model.config.image_token_index
    lm = model.language_model
    kinds, weights = zip(*TASK_MIX.items())

    def loss_fn(step: int) -> torch.Tensor:
        kind = rng.choices(kinds, weights)[0]
        idx = [rng.randrange(len(pool)) for _ in range(BATCH)]
        pairs = [sample_task(pool.scenes[i], kind, rng) for i in idx]
        ids, mask, labels = enc.batch(pairs, prefix=nq, prefix_id=image_id)
        embeds = lm.get_input_embeddings()(ids)
        embeds = torch.cat([soft_prompt(model, feats[idx]), embeds[:, nq:]], dim=1)
        return lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    info = fit(model, loss_fn, steps, LR, params=params, desc="stage 3: Q-Former")
    model.requires_grad_(True)
    return info


# --- build and evaluate ------------------------------------------------------------------------

def _pixels(processor: Blip2Processor):
    return lambda images: processor.image_processor(images, return_tensors="pt").pixel_values


def build(name: str, out_dir: Path, *, smoke: bool = False, deps: dict[str, Path] | None = None) -> dict:
    """Train the toy BLIP-2 (three stages, fixed seeds) and save model, processor and model card."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    torch.manual_seed(TRAIN_SEED)
    processor = make_processor()
    tok = processor.tokenizer
    image_token_index = tok.convert_tokens_to_ids("<image>")
    model = Blip2ForConditionalGeneration(make_config(image_token_index))
    with torch.no_grad():  # transformers initialises the query tokens to zeros; BLIP-2 trains them from N(0, 0.02)
        model.query_tokens.normal_(std=0.02)
    enc = _Encoder(tok)
    steps = (data.SMOKE_STEPS,) * 3 if smoke else (LM_STEPS, VISION_STEPS, QFORMER_STEPS)
    pool = data.make_pool(64 if smoke else POOL_SIZE, TRAIN_SEED, _pixels(processor))

    info = {
        "stage1_lm": pretrain_lm(model, enc, steps[0], TRAIN_SEED + 1),
        "stage2_vision": pretrain_vision(model, pool, steps[1], TRAIN_SEED + 2),
        "stage3_qformer": train_qformer(model, enc, pool, steps[2], TRAIN_SEED + 3),
    }
    model.generation_config = GenerationConfig(
        max_new_tokens=MAX_NEW_TOKENS, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    train_seconds = time.perf_counter() - start
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    scores = evaluate(name, out_dir, n=40 if smoke else 200)
    info["scores"] = scores
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


@torch.no_grad()
def evaluate(name: str, model_dir: Path, n: int = 200) -> dict[str, float]:
    """Exact captions (no prompt), one-word answers to ``"Question: {q} Answer:"`` and to
    multi-turn prompts (the last question), on fresh scenes, through the public API."""
    processor = Blip2Processor.from_pretrained(model_dir)
    model = Blip2ForConditionalGeneration.from_pretrained(model_dir).eval()
    scenes = data.eval_scenes(n)
    rng = random.Random(data.EVAL_SEED)
    cap_ok = qa_ok = multi_ok = 0
    for batch in data.batched(scenes, 50):
        images = [s.render() for s in batch]
        captions = generate_texts(model, processor, images)
        cap_ok += sum(c == s.caption for c, s in zip(captions, batch))
        qas = [sw.sample_qa(s, rng) for s in batch]
        answers = generate_texts(model, processor, images, [sw.blip2_prompt([], qa.question) for qa in qas])
        qa_ok += sum(_clean_answer(a) == qa.answer for a, qa in zip(answers, qas))
        prompts, truths = [], []
        for s in batch:
            history = [(q.question, q.answer) for q in (sw.sample_qa(s, rng), sw.sample_qa(s, rng))]
            last = sw.sample_qa(s, rng)
            prompts.append(sw.blip2_prompt(history, last.question))
            truths.append(last.answer)
        answers = generate_texts(model, processor, images, prompts)
        multi_ok += sum(_clean_answer(a) == t for a, t in zip(answers, truths))
    return {
        "captions exact (no prompt)": cap_ok / n,
        "answers ('Question: ... Answer:')": qa_ok / n,
        "answers (multi-turn prompt, last question)": multi_ok / n,
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


def _recipe(info: dict) -> str:
    s1, s2, s3 = info["stage1_lm"], info["stage2_vision"], info["stage3_qformer"]
    return f"""BLIP-2's recipe in miniature: two pretrained unimodal models stay FROZEN and a small Q-Former
learns to translate between them.

1. **Language model pretraining (text only).** `OPTForCausalLM` trained as a plain causal LM on
   ShapesWorld text: captions, "Question: {{q}} Answer: {{a}}" texts and multi-turn Q&A about one scene
   (the answers of one text are consistent with each other, like real text). It never sees an image, so on
   its own it can only guess answers from the text. {s1['steps']} steps, batch {BATCH}, OneCycle max lr {LR},
   {s1['seconds']:.0f} s, final loss {s1['final_loss']:.3f}.
2. **Vision encoder pretraining.** The real BLIP-2 takes a ViT already pretrained with CLIP-style training
   (EVA-CLIP ViT-g). The toy instead pretrains its small `Blip2VisionModel` with two auxiliary supervised
   heads, thrown away afterwards: every patch token names the colour and shape under it (or background), and
   the pooled output names the objects from left to right. So the encoder already "sees" colours, shapes and
   their places before BLIP-2 training starts. {s2['steps']} steps, batch {BATCH}, OneCycle max lr {LR},
   {s2['seconds']:.0f} s; on training scenes afterwards {s2['patch_accuracy']:.1%} of patches and
   {s2['slots_accuracy']:.1%} of images (all three slots) right.
3. **Q-Former training with both ends frozen.** Vision encoder and OPT are frozen; only the
   {NUM_QUERY_TOKENS} query tokens, the Q-Former and `language_projection` learn, with the LM loss of the frozen
   OPT on: captions with no prompt ({TASK_MIX['caption']:.0%} of batches), "Question: {{q}} Answer:" ->
   " {{answer}}" ({TASK_MIX['question']:.0%}) and multi-turn prompts built with `shapesworld.blip2_prompt`
   (1-2 earlier pairs) where the model answers the last question ({TASK_MIX['multi_turn']:.0%}). {s3['steps']} steps, batch {BATCH}, OneCycle max lr {LR},
   {s3['seconds']:.0f} s, final loss {s3['final_loss']:.3f}.

Simplified against the real recipe: the real Q-Former first has a representation-learning stage of its own
(image-text contrastive, matching and grounded generation losses with its text side) before the generative
stage with the frozen LLM; the toy runs only the generative stage, so its Q-Former text-side weights are
unused. Images are 64 x 64 (any input size is resized by the processor)."""
