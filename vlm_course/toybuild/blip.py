"""Toy BLIP checkpoints: ``blip-captioning`` (BlipForConditionalGeneration) and ``blip-vqa``
(BlipForQuestionAnswering), both with a ``BlipProcessor``.

Recipe in miniature of the real one: a ViT image encoder and a BERT-style text decoder trained
with a captioning LM loss (with and without a text prompt such as "a photography of"); the VQA
model starts from the trained captioning model (vision encoder, and its text transformer as both
the question encoder and the answer decoder) and is fine-tuned to generate one-word answers.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import (
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForQuestionAnswering,
    BlipImageProcessor,
    BlipProcessor,
)

from .. import shapesworld as sw
from .card import write_model_card
from .data import EVAL_SEED, SMOKE_STEPS, batched, eval_scenes, on_every_sampler
from .tokenizers_bert import build_blip_tokenizer
from .train import fit

IMAGE_SIZE = 64
PATCH_SIZE = 8
WIDTH = 64  # every hidden size is a multiple of 64 (bitsandbytes 4-bit on CPU)
VISION_LAYERS = 4
TEXT_LAYERS = 2
HEADS = 4
MAX_POSITIONS = 128
MAX_TEXT_TOKENS = MAX_POSITIONS - 32  # tokenizer limit: leaves room for generated tokens
MLP = 2 * WIDTH
# Conditional captioning: the real captioning model continues "a photography of" / "a picture of".
CAPTION_PROMPTS = ("a photography of", "a picture of")
PROMPT_FRACTION = 0.25

CAPTION_SEED = 101
VQA_SEED = 202
REAL = {
    "blip-captioning": "Salesforce/blip-image-captioning-base",
    "blip-vqa": "Salesforce/blip-vqa-base",
}


# --- processor, config, pixels ------------------------------------------------------------

def make_processor() -> BlipProcessor:
    """``BlipProcessor``: a 64 px ``BlipImageProcessor`` (CLIP mean/std, bicubic) and the toy BERT tokenizer."""
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return BlipProcessor(image_processor=image_processor, tokenizer=build_blip_tokenizer(MAX_TEXT_TOKENS))


def make_config(processor: BlipProcessor) -> BlipConfig:
    tok = processor.tokenizer
    vocab_size = math.ceil(len(tok) / 64) * 64
    text = dict(
        vocab_size=vocab_size,
        hidden_size=WIDTH,
        intermediate_size=MLP,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tok.bos_token_id,
        sep_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
    )
    vision = dict(
        hidden_size=WIDTH,
        intermediate_size=MLP,
        num_hidden_layers=VISION_LAYERS,
        num_attention_heads=HEADS,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        initializer_range=0.02,
    )
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=WIDTH, image_text_hidden_size=WIDTH)


def image_bytes(images: list[Image.Image], image_processor: BlipImageProcessor) -> torch.Tensor:
    """RGB ``images`` resized as ``image_processor`` resizes them (bicubic), as a uint8 ``(N, 3, H, W)``
    tensor: a compact form for training pools (``normalize`` turns it into ``pixel_values``)."""
    h, w = image_processor.size["height"], image_processor.size["width"]
    arr = np.stack([np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def normalize(pixels: torch.Tensor, image_processor: BlipImageProcessor) -> torch.Tensor:
    """uint8 pixels -> ``pixel_values`` (rescale to [0, 1], then the processor's mean/std)."""
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def pixel_values(images: list[Image.Image], image_processor: BlipImageProcessor) -> torch.Tensor:
    """What ``image_processor`` gives for ``images`` (equal to its PIL backend, within 0.02 of the default
    torchvision one), computed in one batch: several times faster, for building training pools."""
    return normalize(image_bytes(images, image_processor), image_processor)


def render_pool(n: int, seed: int, image_processor: BlipImageProcessor,
                mix: tuple[float, float, float] | None = None) -> tuple[list[sw.Scene], torch.Tensor]:
    """``n`` training scenes and their resized images (uint8, see ``image_bytes``). ``mix`` gives the
    shares of 1-, 2- and 3-object scenes (default: the spec's uniform draw), so that busier, harder
    scenes may be drawn more often."""
    if mix is None:
        scenes = sw.sample_scenes(n, seed)
    else:
        counts = [round(n * share) for share in mix]
        scenes = [s for k, c in enumerate(counts, 1) for s in sw.sample_scenes(c, seed + k, n_objects=k)]
    parts = [image_bytes([s.render() for s in chunk], image_processor) for chunk in batched(scenes, 512)]
    return scenes, torch.cat(parts)


# --- captioning ----------------------------------------------------------------------------

def caption_batch(
    processor: BlipProcessor, captions: list[str], prompts: list[str | None]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` for captioning: ``[DEC] prompt caption [SEP]``
    exactly as ``generate`` starts (it swaps ``[CLS]`` for ``[DEC]``); prompt tokens are not scored."""
    tok = processor.tokenizer
    texts = [f"{p} {c}" if p else c for c, p in zip(captions, prompts, strict=True)]
    enc = tok(texts, padding=True, return_tensors="pt")
    ids = enc.input_ids.clone()
    ids[:, 0] = tok.bos_token_id
    labels = ids.masked_fill(enc.attention_mask == 0, -100)
    for i, p in enumerate(prompts):
        if p:
            n_prompt = len(tok(p, add_special_tokens=False).input_ids)
            labels[i, 1 : 1 + n_prompt] = -100
    return ids, enc.attention_mask, labels


def _save(model: torch.nn.Module, processor: BlipProcessor, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def train_captioning(processor: BlipProcessor, *, steps: int, pool_size: int, batch_size: int, max_lr: float,
                     mix: tuple[float, float, float] | None = None,
                     seed: int = CAPTION_SEED) -> tuple[BlipForConditionalGeneration, dict]:
    """Caption LM loss on 1-3 object scenes; a ``PROMPT_FRACTION`` of samples start with a prompt."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = BlipForConditionalGeneration(make_config(processor))
    scenes, pixels = render_pool(pool_size, seed, processor.image_processor, mix)

    def loss_fn(step: int) -> torch.Tensor:
        idx = [rng.randrange(len(scenes)) for _ in range(batch_size)]
        captions = [scenes[i].caption for i in idx]
        prompts = [rng.choice(CAPTION_PROMPTS) if rng.random() < PROMPT_FRACTION else None for _ in idx]
        ids, mask, labels = caption_batch(processor, captions, prompts)
        pv = normalize(pixels[idx], processor.image_processor)
        return model(pixel_values=pv, input_ids=ids, attention_mask=mask, labels=labels).loss

    info = fit(model, loss_fn, steps, max_lr, desc="blip-captioning")
    return model, info


# --- visual question answering ---------------------------------------------------------------

def phrase_question(question: str, rng: random.Random) -> str:
    """The spec question as a person may type it: any capitalisation, "colour" or "color",
    with or without the final "?"."""
    if question.startswith("what color") and rng.random() < 0.3:
        question = question.replace("color", "colour", 1)
    if rng.random() < 0.5:
        question = question.rstrip("?")
    style = rng.random()
    if style < 0.4:
        return question[0].upper() + question[1:]
    if style < 0.5:
        return question.upper()
    if style < 0.6:
        return question.title()
    return question


def answer_batch(processor: BlipProcessor, answers: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder ``input_ids``, ``attention_mask``, ``labels`` for ``[DEC] answer [SEP]`` (``generate`` starts from ``[DEC]``)."""
    tok = processor.tokenizer
    enc = tok(answers, padding=True, return_tensors="pt")
    ids = enc.input_ids.clone()
    ids[:, 0] = tok.bos_token_id
    return ids, enc.attention_mask, ids.masked_fill(enc.attention_mask == 0, -100)


def vqa_from_captioner(captioner: BlipForConditionalGeneration) -> BlipForQuestionAnswering:
    """A VQA model initialised from a trained captioner: its vision encoder, and its text
    transformer (with cross-attention to the image) as both question encoder and answer decoder."""
    model = BlipForQuestionAnswering(captioner.config)
    model.vision_model.load_state_dict(captioner.vision_model.state_dict())
    model.text_encoder.load_state_dict(captioner.text_decoder.bert.state_dict())
    model.text_decoder.load_state_dict(captioner.text_decoder.state_dict())
    return model


def vqa_loss(model: BlipForQuestionAnswering, image_embeds: torch.Tensor, input_ids: torch.Tensor,
             attention_mask: torch.Tensor, answer_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Answer LM loss computed exactly as ``generate`` runs the model: the answer decoder attends to
    every question position (``generate`` passes an all-ones mask there), so padded batches behave alike."""
    question_embeds = model.text_encoder(
        input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds
    ).last_hidden_state
    return model.text_decoder(input_ids=answer_ids, encoder_hidden_states=question_embeds, labels=labels).loss


@torch.no_grad()
def image_features(model: BlipForQuestionAnswering, pixels: torch.Tensor, image_processor: BlipImageProcessor,
                   chunk: int = 256) -> torch.Tensor:
    """The (frozen) vision encoder's ``last_hidden_state`` for a pool of uint8 images, computed once."""
    model.vision_model.eval()
    return torch.cat([model.vision_model(pixel_values=normalize(p, image_processor)).last_hidden_state
                      for p in pixels.split(chunk)])


def train_vqa(processor: BlipProcessor, captioner: BlipForConditionalGeneration, *, steps: int, pool_size: int,
              batch_size: int, max_lr: float, seed: int = VQA_SEED) -> tuple[BlipForQuestionAnswering, dict]:
    """Fine-tune the question encoder and answer decoder (vision frozen, features computed once) on
    (image, question) -> one-word answer over every question type of the spec."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = vqa_from_captioner(captioner)
    model.vision_model.requires_grad_(False)
    scenes, pixels = render_pool(pool_size, seed, processor.image_processor)
    feats = image_features(model, pixels, processor.image_processor)
    tok = processor.tokenizer

    def loss_fn(step: int) -> torch.Tensor:
        idx = [rng.randrange(len(scenes)) for _ in range(batch_size)]
        qas = [sw.sample_qa(scenes[i], rng) for i in idx]
        q = tok([phrase_question(qa.question, rng) for qa in qas], padding=True, return_tensors="pt")
        a_ids, _, labels = answer_batch(processor, [qa.answer for qa in qas])
        return vqa_loss(model, feats[idx], q.input_ids, q.attention_mask, a_ids, labels)

    info = fit(model, loss_fn, steps, max_lr, desc="blip-vqa")
    model.vision_model.requires_grad_(True)
    return model, info


# --- evaluation (through the public API, as a learner would) ----------------------------------

def _same_text(a: str, b: str) -> bool:
    """Equal up to whitespace (the spec lets generated captions differ only there)."""
    return "".join(a.split()) == "".join(b.split())


def _changed_rate(pairs: list[tuple[str, str, str, str]]) -> float:
    """Among consecutive items whose true outputs differ, how often the predictions differ too."""
    relevant = [(p1, p2) for t1, t2, p1, p2 in pairs if t1 != t2]
    return sum(p1.strip() != p2.strip() for p1, p2 in relevant) / max(1, len(relevant))


@torch.no_grad()
def caption_images(model: BlipForConditionalGeneration, processor: BlipProcessor, images: list[Image.Image],
                   prompt: str | None = None, batch_size: int = 50) -> list[str]:
    """Captions as the lesson makes them: processor -> ``generate`` -> decode without special tokens
    (with ``prompt``, the conditional caption, which starts with the prompt)."""
    texts: list[str] = []
    for chunk in batched(images, batch_size):
        text = [prompt] * len(chunk) if prompt else None
        out = model.generate(**processor(images=list(chunk), text=text, return_tensors="pt"), max_new_tokens=30)
        texts += [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]
    return texts


@torch.no_grad()
def answer_questions(model: BlipForQuestionAnswering, processor: BlipProcessor, image: Image.Image,
                     questions: list[str]) -> list[str]:
    """Answers to several questions about one image in ONE padded batch, as the lesson does."""
    inputs = processor(images=[image] * len(questions), text=questions, padding=True, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5)
    return [a.strip() for a in processor.batch_decode(out, skip_special_tokens=True)]


def evaluate_captioning(model_dir: Path, n: int = 200, sampler: str = "course") -> dict[str, float]:
    """Exact captions without a prompt (overall and by object count), captions continuing the prompt
    "a photography of", and how often a different image changes the caption."""
    processor = BlipProcessor.from_pretrained(model_dir)
    model = BlipForConditionalGeneration.from_pretrained(model_dir).eval()
    scenes = eval_scenes(n, sampler=sampler)
    images = [s.render() for s in scenes]
    preds = caption_images(model, processor, images)
    prompt = CAPTION_PROMPTS[0]
    cond = caption_images(model, processor, images, prompt)
    ok = [_same_text(p, s.caption) for p, s in zip(preds, scenes, strict=True)]
    scores = {"caption_exact": sum(ok) / n}
    for k in (1, 2, 3):
        sel = [o for o, s in zip(ok, scenes, strict=True) if len(s.objects) == k]
        scores[f"caption_exact_{k}_object{'s' if k > 1 else ''}"] = sum(sel) / max(1, len(sel))
    cond_ok = [_same_text(c, f"{prompt} {s.caption}") for c, s in zip(cond, scenes, strict=True)]
    scores["conditional_caption_exact"] = sum(cond_ok) / n
    pairs = [(a.caption, b.caption, pa, pb) for a, b, pa, pb in zip(scenes, scenes[1:], preds, preds[1:], strict=False)]
    scores["different_image_different_caption"] = _changed_rate(pairs)
    return scores


QUESTION_TYPES = ("count", "shape_count", "color", "shape", "yes_no_cs", "yes_no_s")


def eval_questions(scene: sw.Scene, rng: random.Random) -> list[sw.QA]:
    """One question of every type that may be asked of ``scene`` (in ``QUESTION_TYPES`` order)."""
    by_type: dict[str, list[sw.QA]] = {}
    for qa in sw.questions(scene):
        by_type.setdefault(sw.answer_kind(qa.question, detailed=True), []).append(qa)
    return [rng.choice(by_type[t]) for t in QUESTION_TYPES if t in by_type]


def vqa_hits(model: BlipForQuestionAnswering, processor: BlipProcessor, scenes: list[sw.Scene],
             seed: int = EVAL_SEED) -> dict[str, list[tuple[str, str]]]:
    """``{question type: [(true answer, model answer), ...]}``: every type that may be asked of each
    scene, phrased as people type (see ``phrase_question``), one padded batch per scene."""
    rng = random.Random(seed)
    results: dict[str, list[tuple[str, str]]] = {t: [] for t in QUESTION_TYPES}
    for scene in scenes:
        qas = eval_questions(scene, rng)
        answers = answer_questions(model, processor, scene.render(), [phrase_question(q.question, rng) for q in qas])
        for qa, a in zip(qas, answers, strict=True):
            results[sw.answer_kind(qa.question, detailed=True)].append((qa.answer, a.lower()))
    return results


def evaluate_vqa(model_dir: Path, n: int = 200, sampler: str = "course") -> dict[str, float]:
    """One-word answers per question type and overall, and how often a different image changes the
    answer to the "how many shapes" question (among consecutive scenes whose true answers differ)."""
    processor = BlipProcessor.from_pretrained(model_dir)
    model = BlipForQuestionAnswering.from_pretrained(model_dir).eval()
    results = vqa_hits(model, processor, eval_scenes(n, sampler=sampler))
    every = [t == a for pairs in results.values() for t, a in pairs]
    scores = {"vqa_accuracy": sum(every) / len(every)}
    scores.update({f"vqa_accuracy_{t}": sum(x == y for x, y in v) / max(1, len(v)) for t, v in results.items()})
    counts = results["count"]
    scores["different_image_different_answer"] = _changed_rate(
        [(t1, t2, p1, p2) for (t1, p1), (t2, p2) in zip(counts, counts[1:], strict=False)])
    return scores


def evaluate(name: str, model_dir: Path, n: int = 200, sampler: str = "course") -> dict[str, float]:
    """Quality of a built checkpoint on fresh scenes of ``sampler`` (see ``evaluate_captioning`` / ``evaluate_vqa``)."""
    if name == "blip-captioning":
        return evaluate_captioning(Path(model_dir), n, sampler)
    if name == "blip-vqa":
        return evaluate_vqa(Path(model_dir), n, sampler)
    raise KeyError(f"{name!r} is not built here; this module builds 'blip-captioning' and 'blip-vqa'")


# --- build ----------------------------------------------------------------------------------------

CAPTION_RECIPE = dict(steps=4000, pool_size=12000, batch_size=32, max_lr=2e-3, mix=(0.2, 0.4, 0.4))
VQA_RECIPE = dict(steps=3000, pool_size=8000, batch_size=64, max_lr=2e-3)
SMOKE_RECIPE = dict(steps=SMOKE_STEPS, pool_size=16, batch_size=8, max_lr=1e-3)
EVAL_N = 200

ARCHITECTURE = f"""- Vision: `BlipVisionModel` ViT, {IMAGE_SIZE} x {IMAGE_SIZE} px input, patch {PATCH_SIZE} \
({(IMAGE_SIZE // PATCH_SIZE) ** 2} patches + [CLS]), width {WIDTH}, {VISION_LAYERS} layers, {HEADS} heads, MLP {MLP}.
- Text: BERT-style `BlipTextModel` layers with cross-attention to the image, width {WIDTH}, {TEXT_LAYERS} layers, \
{HEADS} heads, MLP {MLP}, {MAX_POSITIONS} positions.
- Tokenizer: uncased BERT WordPiece (`BertTokenizer`) trained on the ShapesWorld corpus, with every ASCII \
character and `##` piece so any text tokenizes (other symbols become `[UNK]`), plus BLIP's `[DEC]` (bos) and \
`[ENC]` tokens. The real checkpoints use `bert-base-uncased` + the same two tokens.
- Image processor: `BlipImageProcessor` (bicubic resize to {IMAGE_SIZE} px, CLIP mean/std)."""


def _recipe_text(name: str, recipe: dict, info: dict) -> str:
    mix = recipe.get("mix")
    pool = (f"a pool of {recipe['pool_size']:,} rendered scenes"
            + (f" ({mix[0]:.0%} / {mix[1]:.0%} / {mix[2]:.0%} with 1 / 2 / 3 objects)" if mix else " (1-3 objects)"))
    common = (f"{recipe['steps']} AdamW steps, batch {recipe['batch_size']}, OneCycle max lr {recipe['max_lr']:g}, "
              f"on {pool}; final training loss {info['final_loss']:.4f}.")
    if name == "blip-captioning":
        prompts = ", ".join(map(repr, CAPTION_PROMPTS))
        return (f"Captioning language-model loss on `[DEC] caption [SEP]` (the real model's captioning fine-tune, in "
                f"miniature; there is no ITC/ITM pre-training here). {PROMPT_FRACTION:.0%} of the samples start with "
                f"a prompt ({prompts}; prompt tokens not scored), so conditional captioning continues the prompt "
                f"with the caption. " + common)
    return ("Starts from the trained toy `blip-captioning` (as the real BLIP VQA model starts from pretrained BLIP): its "
            "vision encoder, and its text transformer as both the question encoder and the answer decoder. Fine-tuned "
            "with the answer LM loss on `[DEC] answer [SEP]` for (image, question) pairs drawn with "
            "`shapesworld.sample_qa` over every question type, phrased in any capitalisation, with or without '?', "
            "'color' or 'colour'. To fit the CPU budget the vision encoder stays frozen (its features are computed "
            "once; the real model fine-tunes it too). " + common)


def build(name: str, out_dir: Path, *, smoke: bool = False, deps: dict[str, Path] | None = None) -> dict:
    """Train ``blip-captioning`` or ``blip-vqa`` (which starts from ``deps["blip-captioning"]``) and save it."""
    out_dir = Path(out_dir)
    deps = deps or {}
    if name == "blip-captioning":
        recipe = SMOKE_RECIPE if smoke else CAPTION_RECIPE
        processor = make_processor()
        model, info = train_captioning(processor, **recipe)
    elif name == "blip-vqa":
        if "blip-captioning" not in deps:
            raise KeyError("blip-vqa starts from the trained toy blip-captioning: pass deps={'blip-captioning': folder} "
                           "(vlm-course build-toy-models builds it first)")
        recipe = SMOKE_RECIPE if smoke else VQA_RECIPE
        processor = BlipProcessor.from_pretrained(deps["blip-captioning"])
        captioner = BlipForConditionalGeneration.from_pretrained(deps["blip-captioning"])
        model, info = train_vqa(processor, captioner, **recipe)
    else:
        raise KeyError(f"{name!r} is not built here; this module builds 'blip-captioning' and 'blip-vqa'")
    _save(model, processor, out_dir)
    scores = on_every_sampler(evaluate, name, out_dir, n=8 if smoke else EVAL_N)
    write_model_card(out_dir, name=name, model=model, real_checkpoint=REAL[name], architecture=ARCHITECTURE,
                     recipe=_recipe_text(name, recipe, info), scores=scores, train_seconds=info["seconds"])
    return {**info, "scores": scores}
