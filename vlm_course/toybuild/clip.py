"""The toy ``clip`` checkpoint: a ``CLIPModel`` trained contrastively on ShapesWorld.

Recipe in miniature of OpenAI CLIP: image-text pairs ("a photo of {caption}" for 1-3 object
scenes), a symmetric softmax contrastive loss over the batch with a learned temperature. ShapesWorld
repeats texts within a batch (12 single-object labels), so the targets are soft: every text in the
batch that is true of an image counts as its positive (with distinct texts this is exactly
``CLIPModel``'s own ``return_loss=True`` loss). The vision tower is also LLaVA's (see ``llava``).

The helpers for training texts, targets and evaluation are shared with the ``siglip`` builder.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from .. import shapesworld as sw
from . import card, data, train
from .tokenizers_clip import build_clip_tokenizer

IMAGE_SIZE = 64
PATCH_SIZE = 16  # a 4 x 4 grid: 16 image tokens per picture for the toy LLaVA that reuses this tower
WIDTH = 64
REAL_CHECKPOINT = "openai/clip-vit-base-patch32"
EMBEDDING_SIZE = 512  # ViT-B/32's projection_dim; the trained WIDTH-d projections are lifted to it
LIFT_SEED = 512
NONE_FIT_LABELS = ["a photo of a dog", "a photo of a car"]

# Full training run (the smoke run uses tiny pools and data.SMOKE_STEPS steps).
STEPS = 3000  # 16 px patches need twice the steps of 8 px ones for the same zero-shot accuracy
BATCH = 64
MAX_LR = 2e-3
POOL_SINGLE = 3000
POOL_MULTI = 5000
SEED = 11

# A text is described by a key: ("caption", "a red circle and a blue square"), ("shape", "circle")
# or ("color", "red"); the key decides which scenes the text is true of.
TextKey = tuple[str, str]


# --- training texts and targets (shared with siglip) -------------------------------------------

def phrase_text(key: TextKey, template: str) -> str:
    """The words for ``key`` in one of the templates ``"a photo of {}"``, ``"this is a photo of {}."``, ``"{}"``."""
    kind, value = key
    words = value if kind == "caption" else f"a {value}" if kind == "shape" else f"a {value} shape"
    return template.format(words)


def training_text(scene: sw.Scene, rng: random.Random) -> tuple[str, TextKey]:
    """A text that is true of ``scene``: mostly "a photo of {caption}", sometimes a shorter label."""
    u = rng.random()
    if len(scene.objects) == 1:
        obj = scene.objects[0]
        key: TextKey = ("caption", obj.phrase) if u < 0.8 else ("shape", obj.shape) if u < 0.9 else ("color", obj.color)
    else:
        key = ("caption", scene.caption) if u < 0.85 else ("caption", rng.choice(scene.objects).phrase)
    v = rng.random()
    template = "a photo of {}" if v < 0.75 else "this is a photo of {}." if v < 0.85 else "{}"
    return phrase_text(key, template), key


def describes(key: TextKey, scene: sw.Scene) -> bool:
    """Whether a text with ``key`` is true of ``scene`` ("a photo of a red circle" is true of any
    scene holding a red circle; a caption of several objects only of scenes with that caption)."""
    kind, value = key
    if kind == "shape":
        return any(o.shape == value for o in scene.objects)
    if kind == "color":
        return any(o.color == value for o in scene.objects)
    if " and " in value:
        return scene.caption == value
    return any(o.phrase == value for o in scene.objects)


def match_matrix(keys: Sequence[TextKey], scenes: Sequence[sw.Scene]) -> torch.Tensor:
    """``M[t, i] = 1`` where text ``t`` is true of image ``i`` (the diagonal always is)."""
    return torch.tensor([[float(describes(k, s)) for s in scenes] for k in keys])


def soft_clip_loss(logits_per_text: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy with soft targets spread over all true pairs.

    With ``match`` the identity it equals ``transformers``' ``clip_loss``.
    """
    text_targets = match / match.sum(dim=1, keepdim=True)
    image_targets = match.t() / match.t().sum(dim=1, keepdim=True)
    text_loss = F.cross_entropy(logits_per_text, text_targets)
    image_loss = F.cross_entropy(logits_per_text.t(), image_targets)
    return (text_loss + image_loss) / 2


class TextCache:
    """Tokenizes each distinct training text once."""

    def __init__(self, tokenizer, padding: bool | str = True) -> None:
        self.tokenizer = tokenizer
        self.padding = padding
        self._ids: dict[str, list[int]] = {}

    def batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        for t in texts:
            if t not in self._ids:
                self._ids[t] = self.tokenizer(t, truncation=True)["input_ids"]
        return self.tokenizer.pad(
            {"input_ids": [self._ids[t] for t in texts]},
            padding="max_length" if self.padding == "max_length" else True,
            max_length=self.tokenizer.model_max_length if self.padding == "max_length" else None,
            return_tensors="pt",
        )


class PairSampler:
    """Batches of (image, text) pairs: half single-object scenes, half 2-3 object scenes."""

    def __init__(self, single: data.ScenePool, multi: data.ScenePool, seed: int) -> None:
        self.single, self.multi = single, multi
        self.rng = random.Random(seed)

    def __call__(self, batch: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        half = batch // 2
        s1, p1 = self.single.sample(half, self.rng)
        s2, p2 = self.multi.sample(batch - half, self.rng)
        scenes = s1 + s2
        texts, keys = zip(*(training_text(s, self.rng) for s in scenes))
        return torch.cat([p1, p2]), list(texts), match_matrix(keys, scenes)


def make_pools(process, smoke: bool, seed: int) -> tuple[data.ScenePool, data.ScenePool]:
    n_single, n_multi = (32, 32) if smoke else (POOL_SINGLE, POOL_MULTI)
    single = data.make_pool(n_single, seed, process, n_objects=1, desc="single-object scenes")
    # 2- and 3-object scenes (make_pool draws one object count per pool, so two halves).
    two = data.make_pool(n_multi // 2, seed + 1, process, n_objects=2, desc="two-object scenes")
    three = data.make_pool(n_multi - n_multi // 2, seed + 2, process, n_objects=3, desc="three-object scenes")
    multi = data.ScenePool(two.scenes + three.scenes, torch.cat([two.pixel_values, three.pixel_values]))
    return single, multi


# --- evaluation through the public API (shared with siglip) -----------------------------------

@torch.no_grad()
def zero_shot_scores(model, processor, images, labels: Sequence[str], padding: bool | str) -> torch.Tensor:
    """``logits_per_image`` for ``images`` x ``labels``, the lesson's way."""
    parts = []
    for chunk in data.batched(images, 50):
        inputs = processor(text=list(labels), images=list(chunk), return_tensors="pt", padding=padding)
        parts.append(model(**inputs).logits_per_image)
    return torch.cat(parts)


def zero_shot_accuracy(model, processor, scenes: Sequence[sw.Scene], kind: str, padding: bool | str) -> float:
    labels = sw.zero_shot_labels(kind)
    logits = zero_shot_scores(model, processor, [s.render() for s in scenes], labels, padding)
    truth = torch.tensor([labels.index(sw.true_label(s, kind)) for s in scenes])
    return (logits.argmax(dim=1) == truth).float().mean().item()


@torch.no_grad()
def retrieval_precision_at_5(model, processor, gallery: Sequence[sw.Scene], padding: bool | str) -> float:
    """Mean precision@5 of "a photo of a red circle"-style queries (12) over a mixed gallery;
    an image is relevant when it holds an object of that colour and shape. Queries with fewer
    than 5 relevant images in the gallery are left out (they could not reach 1.0)."""
    images = [s.render() for s in gallery]
    feats = torch.cat([
        model.get_image_features(**processor(images=list(chunk), return_tensors="pt")).pooler_output
        for chunk in data.batched(images, 50)
    ])
    labels = sw.zero_shot_labels("color_shape")
    text_inputs = processor(text=labels, return_tensors="pt", padding=padding)
    text = model.get_text_features(**text_inputs).pooler_output
    sims = F.normalize(text, dim=-1) @ F.normalize(feats, dim=-1).t()
    precisions = []
    for q, label in enumerate(labels):
        relevant = [describes(("caption", label.removeprefix("a photo of ")), s) for s in gallery]
        if sum(relevant) >= 5:
            precisions.append(sum(relevant[i] for i in sims[q].topk(5).indices.tolist()) / 5)
    if not precisions:
        raise ValueError("the gallery is too small: no query has 5 relevant images; use more scenes")
    return sum(precisions) / len(precisions)


# --- build / evaluate -------------------------------------------------------------------------

def make_processor() -> CLIPProcessor:
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=build_clip_tokenizer())


def save(model, processor, out_dir: Path) -> None:
    """Save model and processor; the tokenizer file keeps no truncation/padding state from training."""
    backend = getattr(processor.tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def make_model(tokenizer) -> CLIPModel:
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=4, num_attention_heads=4,
            image_size=IMAGE_SIZE, patch_size=PATCH_SIZE,
        ),
        projection_dim=WIDTH,
    )
    return CLIPModel(config)


def lift_matrix(width: int = WIDTH, size: int = EMBEDDING_SIZE, seed: int = LIFT_SEED) -> torch.Tensor:
    """A fixed ``size`` x ``width`` matrix with orthonormal columns (``Q.T @ Q == I``), from a seeded QR."""
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(size, width, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()  # signs fixed: the same Q on every machine's QR


def lift_projections(model: CLIPModel, size: int = EMBEDDING_SIZE) -> CLIPModel:
    """The same CLIP with ``size``-d embeddings: both projections multiplied by the fixed semi-orthogonal
    ``lift_matrix``, so every dot product, norm and logit stays what it was while the embeddings, the config's
    ``projection_dim`` (top level, text and vision) and the weights all say ``size`` like ViT-B/32's."""
    config = model.config.to_dict()
    config["projection_dim"] = size
    config["text_config"]["projection_dim"] = config["vision_config"]["projection_dim"] = size
    lifted = CLIPModel(CLIPConfig(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}))
    state = model.state_dict()
    q = lift_matrix(model.config.projection_dim, size)
    for key in ("visual_projection.weight", "text_projection.weight"):
        state[key] = q @ state[key]
    lifted.load_state_dict(state)
    return lifted.eval()


def build(name: str, out_dir: Path, *, smoke: bool = False, deps: dict[str, Path] | None = None) -> dict:
    """Train the toy CLIP and save it (model, processor, model card) into ``out_dir``."""
    torch.manual_seed(SEED)
    processor = make_processor()
    model = make_model(processor.tokenizer)
    process = lambda ims: processor.image_processor(images=ims, return_tensors="pt").pixel_values  # noqa: E731
    single, multi = make_pools(process, smoke, SEED)
    sampler = PairSampler(single, multi, SEED)
    texts = TextCache(processor.tokenizer)
    steps = data.SMOKE_STEPS if smoke else STEPS

    def loss_fn(step: int) -> torch.Tensor:
        pixel_values, batch_texts, match = sampler(BATCH)
        out = model(pixel_values=pixel_values, **texts.batch(batch_texts))
        return soft_clip_loss(out.logits_per_text, match)

    start = time.perf_counter()
    stats = train.fit(model, loss_fn, steps, MAX_LR, desc="clip contrastive")
    seconds = time.perf_counter() - start
    model = lift_projections(model)
    save(model, processor, out_dir)
    scores = data.on_every_sampler(evaluate, name, out_dir, n=20 if smoke else 200)
    n_params = sum(p.numel() for p in model.parameters())
    card.write_model_card(
        out_dir, name=name, model=model, real_checkpoint=REAL_CHECKPOINT,
        architecture=(
            f"`CLIPModel`: ViT vision tower {WIDTH} wide x 4 layers (4 heads), {IMAGE_SIZE} px images in "
            f"{PATCH_SIZE} px patches ({(IMAGE_SIZE // PATCH_SIZE) ** 2} patches + CLS); causal text transformer {WIDTH} wide x 2 layers, "
            f"{len(processor.tokenizer)}-token byte-level BPE `CLIPTokenizer` (lower-cased like OpenAI's, "
            f"any text encodes), up to 77 tokens; both projected to {WIDTH} dims in training, then lifted to "
            f"{EMBEDDING_SIZE} dims (ViT-B/32's embedding size) by a fixed matrix with orthonormal columns, which "
            f"keeps every similarity and logit: `projection_dim` is {EMBEDDING_SIZE} in the config and the weights. "
            f"`CLIPImageProcessor` resizes any image (shortest edge {IMAGE_SIZE}, bicubic) and centre-crops to "
            f"{IMAGE_SIZE} x {IMAGE_SIZE}."
        ),
        recipe=(
            f"Contrastive image-text pre-training in miniature: {steps} steps, batch {BATCH} (half single-object "
            "scenes, half 2-3 object scenes), texts mostly \"a photo of {caption}\" (also \"this is a photo of "
            "...\" / bare captions, \"a photo of a {shape}\", \"a photo of a {colour} shape\", and one object of a "
            "multi-object scene). Symmetric softmax cross-entropy with a learned temperature (init 1/0.07); "
            "soft targets spread over every text in the batch that is true of the image (repeated labels). "
            f"AdamW, OneCycle max lr {MAX_LR}, weight decay 0.01, grad-norm clip 1.0. "
            f"Pools: {len(single)} single-object + {len(multi)} multi-object scenes (seed {SEED}); "
            f"final loss {stats['final_loss']:.3f}. The vision tower is also the toy LLaVA's."
        ),
        scores=scores, train_seconds=seconds,
    )
    return {"steps": steps, "train_seconds": round(seconds, 1), "final_loss": stats["final_loss"],
            "params": n_params, **scores}


def evaluate(name: str, model_dir: Path, n: int = 200, sampler: str = "course") -> dict[str, float]:
    """Zero-shot accuracy (12 / 3 / 4 labels) on fresh single-object scenes and text->image
    precision@5 on a fresh mixed gallery, through ``CLIPProcessor`` + ``CLIPModel``."""
    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)
    singles = data.eval_scenes(n, n_objects=1, sampler=sampler)
    gallery = data.eval_scenes(n, offset=1, sampler=sampler)
    return {
        "zero-shot top-1, 12 colour-shape labels": zero_shot_accuracy(model, processor, singles, "color_shape", True),
        "zero-shot top-1, 3 shape labels": zero_shot_accuracy(model, processor, singles, "shape", True),
        "zero-shot top-1, 4 colour labels": zero_shot_accuracy(model, processor, singles, "color", True),
        f"text->image precision@5, 12 queries, {n} mixed scenes": retrieval_precision_at_5(model, processor, gallery, True),
    }
