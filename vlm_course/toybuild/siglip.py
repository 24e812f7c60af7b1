"""The toy ``siglip`` checkpoint: a ``SiglipModel`` trained with the sigmoid loss on ShapesWorld.

Recipe in miniature of SigLIP (Zhai et al., 2023): every image-text pair in the batch is an
independent binary classification, ``sigmoid(t * cos + b)``, with the learned temperature and bias
initialised as in the paper (``t' = log 10``, ``b = -10``). Texts are padded to 64 tokens
(``padding="max_length"``) exactly as at inference. Repeated labels in a batch count as positives
(with distinct texts the loss is exactly ``SiglipModel``'s own ``return_loss=True`` loss).
"""

from __future__ import annotations

import math
import random
import string
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

from .. import shapesworld as sw
from . import card, data, train
from .clip import (
    NONE_FIT_LABELS,
    PairSampler,
    TextCache,
    make_pools,
    retrieval_precision_at_5,
    zero_shot_accuracy,
    zero_shot_scores,
)
from .tokenizers_clip import build_siglip_tokenizer

IMAGE_SIZE = 64
PATCH_SIZE = 8
WIDTH = 64
REAL_CHECKPOINT = "google/siglip-base-patch16-224"
PADDING = "max_length"

STEPS = 1500
BATCH = 64
MAX_LR = 2e-3
SEED = 23
NEGATIVES = 8  # extra texts per batch that fit no image (made-up words), as on the web
_WORLD_WORDS = set(" ".join(sw.text_corpus(20)).lower().replace("?", " ").replace(".", " ").split())
_NEGATIVE_TEMPLATES = ("a photo of a {}", "a photo of {}", "this is a photo of a {}.", "a {}", "{}", "a photo of a {} {}")


def none_fit_text(rng: random.Random) -> str:
    """A text about something that is not in ShapesWorld: made-up words of 2-8 letters."""
    def word() -> str:
        while True:
            w = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 8)))
            if w not in _WORLD_WORDS:
                return w

    template = rng.choice(_NEGATIVE_TEMPLATES)
    return template.format(*(word() for _ in range(template.count("{}"))))


def sigmoid_loss(logits_per_text: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss with labels ``+1`` for every true pair, ``-1`` otherwise.

    With ``match`` the identity it equals ``SiglipModel(..., return_loss=True).loss``.
    """
    labels = 2 * match - 1
    return -F.logsigmoid(labels * logits_per_text).sum(dim=-1).mean()


def make_processor() -> SiglipProcessor:
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return SiglipProcessor(image_processor=image_processor, tokenizer=build_siglip_tokenizer())


def make_model(tokenizer) -> SiglipModel:
    config = SiglipConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
            projection_size=WIDTH,
        ),
        vision_config=dict(
            hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=4, num_attention_heads=4,
            image_size=IMAGE_SIZE, patch_size=PATCH_SIZE,
        ),
    )
    model = SiglipModel(config)
    with torch.no_grad():  # the paper's initialisation of temperature and bias
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


def build(name: str, out_dir: Path, *, smoke: bool = False, deps: dict[str, Path] | None = None) -> dict:
    """Train the toy SigLIP and save it (model, processor, model card) into ``out_dir``."""
    torch.manual_seed(SEED)
    processor = make_processor()
    model = make_model(processor.tokenizer)
    process = lambda ims: processor.image_processor(images=ims, return_tensors="pt").pixel_values  # noqa: E731
    single, multi = make_pools(process, smoke, SEED)
    sampler = PairSampler(single, multi, SEED)
    texts = TextCache(processor.tokenizer, padding=PADDING)
    negative_rng = random.Random(SEED + 1)
    steps = data.SMOKE_STEPS if smoke else STEPS

    def loss_fn(step: int) -> torch.Tensor:
        pixel_values, batch_texts, match = sampler(BATCH)
        # Texts that fit no image in the batch: every pair with them is a negative.
        batch_texts += [none_fit_text(negative_rng) for _ in range(NEGATIVES)]
        match = torch.cat([match, torch.zeros(NEGATIVES, match.shape[1])])
        out = model(pixel_values=pixel_values, **texts.batch(batch_texts))
        return sigmoid_loss(out.logits_per_text, match)

    start = time.perf_counter()
    stats = train.fit(model, loss_fn, steps, MAX_LR, desc="siglip sigmoid")
    seconds = time.perf_counter() - start
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    scores = data.on_every_sampler(evaluate, name, out_dir, n=20 if smoke else 200)
    card.write_model_card(
        out_dir, name=name, model=model, real_checkpoint=REAL_CHECKPOINT,
        architecture=(
            f"`SiglipModel`: ViT vision tower {WIDTH} wide x 4 layers (4 heads) with SigLIP's attention-pooling "
            f"head, {IMAGE_SIZE} px images in {PATCH_SIZE} px patches; bidirectional text transformer {WIDTH} wide "
            f"x 2 layers pooled at the last of its 64 positions, {len(processor.tokenizer)}-piece SentencePiece "
            "`SiglipTokenizer` (lower-cases, drops punctuation, `<unk>` for unseen characters). Use "
            "`padding=\"max_length\"` (64 tokens) as with the real model. `SiglipImageProcessor` resizes any "
            "image to 64 x 64 and normalises to [-1, 1]."
        ),
        recipe=(
            f"Sigmoid-loss image-text pre-training in miniature: {steps} steps, batch {BATCH} (half single-object "
            "scenes, half 2-3 object scenes), texts mostly \"a photo of {caption}\" (also \"this is a photo of "
            "...\" / bare captions, \"a photo of a {shape}\", \"a photo of a {colour} shape\", and one object of a "
            f"multi-object scene), padded to 64 tokens, plus {NEGATIVES} texts per batch about made-up words that "
            "fit no image. Each image-text pair is a binary decision, positive when "
            "the text is true of the image; learned temperature and bias initialised to log 10 and -10 as in "
            f"the paper. AdamW, OneCycle max lr {MAX_LR}, weight decay 0.01, grad-norm clip 1.0. "
            f"Pools: {len(single)} single-object + {len(multi)} multi-object scenes (seed {SEED}); final loss "
            f"{stats['final_loss']:.3f}; learned scale {model.logit_scale.exp().item():.1f}, bias "
            f"{model.logit_bias.item():.2f}."
        ),
        scores=scores, train_seconds=seconds,
    )
    return {"steps": steps, "train_seconds": round(seconds, 1), "final_loss": stats["final_loss"], **scores}


@torch.no_grad()
def sigmoid_checks(model, processor, scenes: list[sw.Scene]) -> dict[str, float]:
    """Independent sigmoid scores: the true label's, and those of labels that fit no scene."""
    images = [s.render() for s in scenes]
    labels = sw.zero_shot_labels("color_shape")
    probs = torch.sigmoid(zero_shot_scores(model, processor, images, labels, PADDING))
    truth = torch.tensor([labels.index(sw.true_label(s)) for s in scenes])
    true_p = probs[torch.arange(len(scenes)), truth]
    none_p = torch.sigmoid(zero_shot_scores(model, processor, images, NONE_FIT_LABELS, PADDING)).max(dim=1).values
    return {
        "true label sigmoid > 0.5 (share of scenes)": (true_p > 0.5).float().mean().item(),
        "true label sigmoid, mean": true_p.mean().item(),
        "'a photo of a dog/car' sigmoid < 0.1 (share of scenes)": (none_p < 0.1).float().mean().item(),
        "'a photo of a dog/car' sigmoid, mean of max": none_p.mean().item(),
    }


def evaluate(name: str, model_dir: Path, n: int = 200, sampler: str = "course") -> dict[str, float]:
    """Zero-shot accuracy (12 / 3 / 4 labels), sigmoid checks on fresh single-object scenes, and
    text->image precision@5 on a fresh mixed gallery, through ``SiglipProcessor`` + ``SiglipModel``."""
    model = SiglipModel.from_pretrained(model_dir).eval()
    processor = SiglipProcessor.from_pretrained(model_dir)
    singles = data.eval_scenes(n, n_objects=1, sampler=sampler)
    gallery = data.eval_scenes(n, offset=1, sampler=sampler)
    return {
        "zero-shot top-1, 12 colour-shape labels": zero_shot_accuracy(model, processor, singles, "color_shape", PADDING),
        "zero-shot top-1, 3 shape labels": zero_shot_accuracy(model, processor, singles, "shape", PADDING),
        "zero-shot top-1, 4 colour labels": zero_shot_accuracy(model, processor, singles, "color", PADDING),
        **sigmoid_checks(model, processor, singles),
        f"text->image precision@5, 12 queries, {n} mixed scenes": retrieval_precision_at_5(model, processor, gallery, PADDING),
    }
