"""ShapesWorld v1: the offline toy world of the course.

Implements the ShapesWorld spec (``docs/shapesworld.md``) exactly: scene sampling,
rendering, captions, zero-shot labels, question/answer pairs and chat conversations.
Every toy checkpoint is trained on this distribution and every toy-profile example is
drawn from it. Two differently built samplers meet the spec (``SAMPLERS``): the
course's own and a second one, so that the toys are measured on scenes of more than
one placement procedure. All sampling is deterministic for a given seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

CANVAS_SIZE = 224
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three")
BACKGROUND_RANGE = (215, 255)
SINGLE_OBJECT_RADIUS = (28, 70)
MULTI_OBJECT_RADIUS = (21, 42)
MIN_GAP = 7
MAX_PLACEMENT_TRIES = 1000

# Answer sets: a chat reply must contain its answer and no other word of the same set.
ANSWER_SETS: dict[str, tuple[str, ...]] = {
    "count": ("one", "two", "three"),
    "shape_count": COUNT_WORDS,
    "color": tuple(COLORS),
    "shape": SHAPES,
    "yes_no": ("yes", "no"),
}

DESCRIBE_PROMPTS: tuple[str, ...] = ("What is shown in this image?", "Describe this image.")
COMPARE_PROMPT = "Compare these two images."

# How people ask in practice (transformers docs, model cards, tutorials). The toys train on the
# public phrasings; the held-out ones are never in training and measure how far that carries.
PUBLIC_DESCRIBE_PROMPTS: tuple[str, ...] = DESCRIBE_PROMPTS + (
    "What's the content of the image?", "Describe the image in detail.", "What do you see?",
    "What is in this image?", "What's in the image?", "Describe the image.", "What does this image show?",
    "Can you describe this image?", "What is this?", "Tell me about this image.", "What is in the picture?",
    "Describe this picture.", "What can you see?", "Caption this image.", "Explain this image.",
)
HELDOUT_DESCRIBE_PROMPTS: tuple[str, ...] = (
    "What can you see in this picture?", "Describe what you see.", "What's in this picture?",
    "Please describe the image.", "What does the picture show?", "Tell me what is in this image.",
    "Can you tell me what is in the image?", "Describe the contents of this image.",
)
PUBLIC_COMPARE_PROMPTS: tuple[str, ...] = (
    COMPARE_PROMPT, "Compare these two images and describe the differences.", "What is the difference between these two images?",
    "Describe these two images.", "What do these two images show?", "Compare the two images.",
)
# Caption prefixes people give BLIP-2 to continue ("a photo of" -> "a photo of a red circle").
PUBLIC_CAPTION_PREFIXES: tuple[str, ...] = ("a photo of", "a picture of", "an image of", "this is a picture of",
                                            "a photography of")
HELDOUT_CAPTION_PREFIXES: tuple[str, ...] = ("this is a photo of", "a picture showing")
# Other wordings of the spec's questions ({shape}, {color} filled in); the answer is the spec question's.
QUESTION_PHRASINGS: dict[str, tuple[str, ...]] = {
    "count": ("How many shapes are in the image?", "How many objects are there?", "How many shapes do you see?",
              "How many objects are in this image?"),
    "shape_count": ("How many {shape}s are in the image?", "How many {shape}s do you see?", "Count the {shape}s.",
                    "How many {shape}s are in this picture?"),
    "color": ("What is the color of the {shape}?", "Which color is the {shape}?", "What colour does the {shape} have?"),
    "shape": ("What is the shape of the {color} object?", "Which shape is {color}?", "What kind of shape is the {color} object?"),
    "yes_no_cs": ("Is there a {color} {shape} in the image?", "Do you see a {color} {shape}?", "Is there any {color} {shape}?"),
    "yes_no_s": ("Is there a {shape} in the image?", "Do you see a {shape}?", "Is there any {shape} in this picture?"),
}


@dataclass(frozen=True)
class ShapeObject:
    """One filled shape centred at (cx, cy) with half-size r, on the 224 px canvas."""

    shape: str
    color: str
    cx: int
    cy: int
    r: int

    @property
    def phrase(self) -> str:
        """``"a red circle"``."""
        return f"a {self.color} {self.shape}"

    def bbox(self) -> tuple[int, int, int, int]:
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)


@dataclass(frozen=True)
class Scene:
    """A ShapesWorld scene: background colour and 1-3 objects."""

    objects: tuple[ShapeObject, ...]
    background: tuple[int, int, int]
    seed: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= 3:
            raise ValueError(f"a scene holds 1 to 3 objects, got {len(self.objects)}")
        for obj in self.objects:
            if obj.shape not in SHAPES:
                raise ValueError(f"unknown shape {obj.shape!r}; choose from {SHAPES}")
            if obj.color not in COLORS:
                raise ValueError(f"unknown colour {obj.color!r}; choose from {tuple(COLORS)}")

    @property
    def caption(self) -> str:
        return caption(self)

    def render(self, size: int = CANVAS_SIZE) -> Image.Image:
        return render(self, size)


def _coerce_rng(rng: random.Random | int | None) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    return random.Random(rng)


def _place(rng: random.Random, radii: Sequence[int]) -> list[tuple[int, int]] | None:
    centres: list[tuple[int, int]] = []
    for r in radii:
        for _ in range(MAX_PLACEMENT_TRIES):
            cx = rng.randint(r, CANVAS_SIZE - 1 - r)
            cy = rng.randint(r, CANVAS_SIZE - 1 - r)
            if all(
                ((cx - ox) ** 2 + (cy - oy) ** 2) ** 0.5 > r + orr + MIN_GAP
                for (ox, oy), orr in zip(centres, radii)
            ):
                centres.append((cx, cy))
                break
        else:
            return None
    return centres


def sample_scene(rng: random.Random | int | None = None, n_objects: int | None = None) -> Scene:
    """Draw one scene per the spec. ``rng`` may be a ``random.Random`` or a seed."""
    seed = rng if isinstance(rng, int) else None
    rng = _coerce_rng(rng)
    n = n_objects if n_objects is not None else rng.randint(1, 3)
    if not 1 <= n <= 3:
        raise ValueError(f"n_objects must be 1, 2 or 3, got {n}")
    background = tuple(rng.randint(*BACKGROUND_RANGE) for _ in range(3))
    lo, hi = SINGLE_OBJECT_RADIUS if n == 1 else MULTI_OBJECT_RADIUS
    while True:
        kinds = [(rng.choice(SHAPES), rng.choice(tuple(COLORS))) for _ in range(n)]
        radii = [rng.randint(lo, hi) for _ in range(n)]
        centres = _place(rng, radii)
        if centres is not None:
            break
    objects = tuple(
        ShapeObject(shape, color, cx, cy, r)
        for (shape, color), r, (cx, cy) in zip(kinds, radii, centres)
    )
    return Scene(objects=objects, background=background, seed=seed)  # type: ignore[arg-type]


def _edge_or_free(rng: random.Random, r: int, edge_share: float) -> int:
    """A centre coordinate for half-size ``r``: with probability ``edge_share`` the shape touches
    one of the two margins, else anywhere it fits."""
    if rng.random() < edge_share:
        return rng.choice((r, CANVAS_SIZE - 1 - r))
    return rng.randint(r, CANVAS_SIZE - 1 - r)


def sample_scene_alt(rng: random.Random | int | None = None, n_objects: int | None = None,
                     edge_share: float = 0.2) -> Scene:
    """A second sampler that meets the spec but is built differently from ``sample_scene``: objects
    are placed first and given their kinds afterwards, ``cy`` is drawn before ``cx``, the half-size
    is drawn again on every placement try (so crowded scenes get smaller shapes), a coordinate
    touches a canvas margin with probability ``edge_share``, and the background is drawn last.
    Scenes with two centres at the same ``cx`` are drawn again (their left-to-right order would be
    undefined)."""
    seed = rng if isinstance(rng, int) else None
    rng = _coerce_rng(rng)
    n = n_objects if n_objects is not None else rng.choice((1, 2, 3))
    if not 1 <= n <= 3:
        raise ValueError(f"n_objects must be 1, 2 or 3, got {n}")
    lo, hi = SINGLE_OBJECT_RADIUS if n == 1 else MULTI_OBJECT_RADIUS
    while True:
        placed: list[tuple[int, int, int]] = []
        for _ in range(n):
            for _ in range(MAX_PLACEMENT_TRIES):
                r = rng.randint(lo, hi)
                cy = _edge_or_free(rng, r, edge_share)
                cx = _edge_or_free(rng, r, edge_share)
                if all(((cx - ox) ** 2 + (cy - oy) ** 2) ** 0.5 > r + orr + MIN_GAP for ox, oy, orr in placed):
                    placed.append((cx, cy, r))
                    break
            else:
                break
        if len(placed) == n and len({cx for cx, _, _ in placed}) == n:
            break
    objects = tuple(ShapeObject(rng.choice(SHAPES), rng.choice(tuple(COLORS)), cx, cy, r) for cx, cy, r in placed)
    background = tuple(rng.randint(*BACKGROUND_RANGE) for _ in range(3))
    return Scene(objects=objects, background=background, seed=seed)  # type: ignore[arg-type]


# The samplers that meet the spec, by name: ``course`` trains and shows the toys, ``alt`` checks
# that they hold on scenes placed another way.
SAMPLERS = {"course": sample_scene, "alt": sample_scene_alt}


def sample_scenes(n: int, seed: int = 0, n_objects: int | None = None, sampler: str = "course") -> list[Scene]:
    """``n`` scenes drawn from one ``random.Random(seed)`` stream by ``SAMPLERS[sampler]``."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    rng = random.Random(seed)
    return [SAMPLERS[sampler](rng, n_objects) for _ in range(n)]


def iter_scenes(seed: int = 0, n_objects: int | None = None) -> Iterator[Scene]:
    """An endless, deterministic stream of scenes (for training loops)."""
    rng = random.Random(seed)
    while True:
        yield sample_scene(rng, n_objects)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    """Draw one spec shape of "radius" ``r`` centred at (``cx``, ``cy``): a circle of radius r, a square of
    side 2r, or a triangle pointing up inside the same 2r x 2r box."""
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def render(scene: Scene, size: int = CANVAS_SIZE) -> Image.Image:
    """Draw the scene on a 224 px RGB canvas (resized to ``size`` if different)."""
    image = Image.new("RGB", (CANVAS_SIZE, CANVAS_SIZE), scene.background)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        draw_shape(draw, obj.shape, obj.cx, obj.cy, obj.r, COLORS[obj.color])
    if size != CANVAS_SIZE:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def _left_to_right(scene: Scene) -> list[ShapeObject]:
    return sorted(scene.objects, key=lambda o: o.cx)


def caption(scene: Scene) -> str:
    """Objects left to right: ``"a red circle, a blue square and a yellow triangle"``."""
    phrases = [o.phrase for o in _left_to_right(scene)]
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def zero_shot_labels(kind: str = "color_shape") -> list[str]:
    """Zero-shot labels: ``color_shape`` (12), ``shape`` (3) or ``color`` (4)."""
    if kind == "color_shape":
        return [f"a photo of a {c} {s}" for c in COLORS for s in SHAPES]
    if kind == "shape":
        return [f"a photo of a {s}" for s in SHAPES]
    if kind == "color":
        return [f"a photo of a {c} shape" for c in COLORS]
    raise ValueError(f"unknown label kind {kind!r}; use 'color_shape', 'shape' or 'color'")


def true_label(scene: Scene, kind: str = "color_shape") -> str:
    """The correct zero-shot label of a single-object scene."""
    if len(scene.objects) != 1:
        raise ValueError("zero-shot labels are defined for single-object scenes only")
    obj = scene.objects[0]
    if kind == "color_shape":
        return f"a photo of a {obj.color} {obj.shape}"
    if kind == "shape":
        return f"a photo of a {obj.shape}"
    if kind == "color":
        return f"a photo of a {obj.color} shape"
    raise ValueError(f"unknown label kind {kind!r}; use 'color_shape', 'shape' or 'color'")


# --- questions and answers -------------------------------------------------------------

@dataclass(frozen=True)
class QA:
    """A question about a scene, its one-word answer, and which answer set it uses."""

    question: str
    answer: str
    kind: str  # a key of ANSWER_SETS


def _count(scene: Scene, **attrs: str) -> int:
    return sum(all(getattr(o, k) == v for k, v in attrs.items()) for o in scene.objects)


def questions(scene: Scene) -> list[QA]:
    """Every question of the spec that may be asked of ``scene``, with its answer."""
    qas = [QA("how many shapes are there?", COUNT_WORDS[len(scene.objects)], "count")]
    for shape in SHAPES:
        qas.append(QA(f"how many {shape}s are there?", COUNT_WORDS[_count(scene, shape=shape)], "shape_count"))
    for shape in SHAPES:
        matching = [o for o in scene.objects if o.shape == shape]
        if len(matching) == 1:
            qas.append(QA(f"what color is the {shape}?", matching[0].color, "color"))
    for color in COLORS:
        matching = [o for o in scene.objects if o.color == color]
        if len(matching) == 1:
            qas.append(QA(f"what shape is the {color} object?", matching[0].shape, "shape"))
    for color in COLORS:
        for shape in SHAPES:
            yes = _count(scene, color=color, shape=shape) > 0
            qas.append(QA(f"is there a {color} {shape}?", "yes" if yes else "no", "yes_no"))
    for shape in SHAPES:
        yes = _count(scene, shape=shape) > 0
        qas.append(QA(f"is there a {shape}?", "yes" if yes else "no", "yes_no"))
    return qas


def sample_qa(scene: Scene, rng: random.Random | int | None = None) -> QA:
    """One question for ``scene``: the question type is uniform over the types that may be
    asked, and yes/no questions get "yes" and "no" answers equally often where both exist."""
    rng = _coerce_rng(rng)
    by_type: dict[str, list[QA]] = {}
    for qa in questions(scene):
        by_type.setdefault(answer_kind(qa.question, detailed=True), []).append(qa)
    items = by_type[rng.choice(sorted(by_type))]
    answers = sorted({qa.answer for qa in items})
    if len(answers) > 1 and items[0].kind == "yes_no":
        chosen = rng.choice(answers)
        items = [qa for qa in items if qa.answer == chosen]
    return rng.choice(items)


_Q_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^how many shapes are there$"), "count"),
    (re.compile(r"^how many (circle|square|triangle)s are there$"), "shape_count"),
    (re.compile(r"^what colou?r is the (circle|square|triangle)$"), "color"),
    (re.compile(r"^what shape is the (red|green|blue|yellow) object$"), "shape"),
    (re.compile(r"^is there an? (red|green|blue|yellow) (circle|square|triangle)$"), "yes_no_cs"),
    (re.compile(r"^is there an? (circle|square|triangle)$"), "yes_no_s"),
]


def normalize_question(question: str) -> str:
    """Lower case, single spaces, no final question mark."""
    text = " ".join(question.strip().lower().split())
    return text[:-1].rstrip() if text.endswith("?") else text


def _parse(question: str) -> tuple[str, re.Match[str]]:
    """The question's detailed kind and regex match; ``ValueError`` for a question outside the spec."""
    text = normalize_question(question)
    for pattern, kind in _Q_PATTERNS:
        m = pattern.match(text)
        if m:
            return kind, m
    raise ValueError(
        f"{question!r} is not a ShapesWorld question; see questions(scene) for the ones the toy models know"
    )


def rephrase(question: str, rng: random.Random) -> str:
    """Another wording of a spec question (``QUESTION_PHRASINGS``), with the same answer."""
    kind, m = _parse(question)
    form = rng.choice(QUESTION_PHRASINGS[kind])
    names = {"count": (), "shape": ("color",), "yes_no_cs": ("color", "shape")}.get(kind, ("shape",))
    fields = dict(zip(names, m.groups(), strict=True))
    return form.format(**fields)


def answer(scene: Scene, question: str) -> str:
    """The one-word answer to a spec question (case-insensitive, final "?" optional).

    Raises ``ValueError`` for a question outside the spec, or one that may not be asked of
    this scene (e.g. "what color is the circle?" with two circles).
    """
    kind, m = _parse(question)
    if kind == "count":
        return COUNT_WORDS[len(scene.objects)]
    if kind == "shape_count":
        return COUNT_WORDS[_count(scene, shape=m.group(1))]
    if kind == "color":
        matching = [o for o in scene.objects if o.shape == m.group(1)]
        if len(matching) != 1:
            raise ValueError(f"{question!r} needs exactly one {m.group(1)} in the scene")
        return matching[0].color
    if kind == "shape":
        matching = [o for o in scene.objects if o.color == m.group(1)]
        if len(matching) != 1:
            raise ValueError(f"{question!r} needs exactly one {m.group(1)} object in the scene")
        return matching[0].shape
    if kind == "yes_no_cs":
        return "yes" if _count(scene, color=m.group(1), shape=m.group(2)) else "no"
    return "yes" if _count(scene, shape=m.group(1)) else "no"


def answer_kind(question: str, detailed: bool = False) -> str:
    """Which answer set (a key of ``ANSWER_SETS``) a spec question uses.

    With ``detailed=True`` the two yes/no forms are told apart (``yes_no_cs``, ``yes_no_s``).
    """
    kind, _ = _parse(question)
    return "yes_no" if kind.startswith("yes_no") and not detailed else kind


# --- chat replies and conversations ------------------------------------------------------

def describe_reply(scene: Scene) -> str:
    return f"The image shows {caption(scene)}."


def compare_reply(first: Scene, second: Scene) -> str:
    return f"The first image shows {caption(first)}. The second image shows {caption(second)}."


def chat_reply(question: str, word: str) -> str:
    """A short sentence that carries the one-word answer ``word`` to ``question``."""
    kind, m = _parse(question)
    if kind == "count":
        return "There is one shape." if word == "one" else f"There are {word} shapes."
    if kind == "shape_count":
        shape = m.group(1)
        return f"There is one {shape}." if word == "one" else f"There are {word} {shape}s."
    if kind == "color":
        return f"The {m.group(1)} is {word}."
    if kind == "shape":
        return f"The {m.group(1)} object is a {word}."
    thing = f"{m.group(1)} {m.group(2)}" if kind == "yes_no_cs" else m.group(1)
    return f"Yes, there is a {thing}." if word == "yes" else f"No, there is no {thing}."


def reply_to(scene: Scene, message: str) -> str:
    """The reference chat-model reply to ``message`` about ``scene``."""
    if normalize_question(message) in {normalize_question(p) for p in DESCRIBE_PROMPTS}:
        return describe_reply(scene)
    return chat_reply(message, answer(scene, message))


def find_answer_word(reply: str, kind: str) -> str | None:
    """The single answer-set word in a free-text reply, or ``None`` if zero or several."""
    words = set(re.findall(r"[a-z]+", reply.lower()))
    found = [w for w in ANSWER_SETS[kind] if w in words]
    return found[0] if len(found) == 1 else None


def sample_conversation(
    scene: Scene, turns: int, rng: random.Random | int | None = None, describe_first: bool = True
) -> list[tuple[str, str]]:
    """``turns`` (user, assistant) pairs about one scene, questions phrased with a capital
    letter as a person would type them."""
    rng = _coerce_rng(rng)
    pairs: list[tuple[str, str]] = []
    for i in range(turns):
        if (i == 0 and describe_first) or rng.random() < 0.15:
            prompt = rng.choice(DESCRIBE_PROMPTS)
            pairs.append((prompt, describe_reply(scene)))
        else:
            qa = sample_qa(scene, rng)
            q = qa.question[0].upper() + qa.question[1:]
            pairs.append((q, chat_reply(qa.question, qa.answer)))
    return pairs


def blip2_prompt(history: Sequence[tuple[str, str]], question: str) -> str:
    """BLIP-2 prompt form: earlier ``Question: q Answer: a`` pairs, then the new question."""
    parts = [f"Question: {q} Answer: {a}." for q, a in history]
    parts.append(f"Question: {question} Answer:")
    return " ".join(parts)


def text_corpus(n_scenes: int = 300, seed: int = 12345) -> list[str]:
    """Every kind of text ShapesWorld uses (labels, captions, questions, replies, prompts),
    for building the toy tokenizers' vocabularies."""
    texts: list[str] = []
    for kind in ("color_shape", "shape", "color"):
        texts += zero_shot_labels(kind)
    texts += list(DESCRIBE_PROMPTS) + [COMPARE_PROMPT]
    scenes = sample_scenes(n_scenes, seed)
    for first, second in zip(scenes, scenes[1:]):
        texts += [caption(first), f"a photo of {caption(first)}", describe_reply(first)]
        texts.append(compare_reply(first, second))
        for qa in questions(first):
            texts += [qa.question, qa.question.capitalize(), qa.answer]
            texts.append(chat_reply(qa.question, qa.answer))
            texts.append(blip2_prompt([], qa.question.capitalize()) + " " + qa.answer)
    return texts
