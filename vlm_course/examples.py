"""Named lesson examples that read well in both profiles.

``get_example("two cats on a couch")`` gives the real COCO photo with labels and questions about
cats (hub profile), or a fixed ShapesWorld scene that plays the same part, with zero-shot labels and
questions the toy models were trained on (toy profile)::

    ex = get_example("two cats on a couch")
    ex.image, ex.labels, ex.questions, ex.profile

In the ``auto`` profile an example is the real photo when it is already in the image cache or the
hub can be reached, else the toy scene. Downloads are cached in ``~/.cache/vlm_course/images``
(or ``$VLM_COURSE_CACHE/images``), so a lesson run once online also works offline.

``photo_example(path_or_url)`` makes the learner's own picture an example (no answer key);
``photo_example()`` gives the photo-like JPEG shipped in ``vlm_course/data`` (a rendered ShapesWorld
scene, so it works offline and has a key in every profile).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import shapesworld as sw
from .profiles import current_profile, hub_reachable

CACHE_ENV = "VLM_COURSE_CACHE"
DOWNLOAD_TIMEOUT_S = 10.0


@dataclass
class Example:
    """One lesson example: an image with zero-shot labels and questions to ask about it.

    ``true_labels`` are the labels that describe the image. In the toy profile ``scene`` is the
    ShapesWorld scene and ``answers`` holds the one-word answer to each question; in the hub profile
    both are ``None`` (a real photo has no answer key). ``photo_example`` gives profile "photo": the
    bundled photo-like picture with its key, or your own picture without one.
    """

    name: str
    image: Image.Image
    labels: list[str]
    questions: list[str]
    description: str
    source: str
    profile: str
    true_labels: list[str] = field(default_factory=list)
    answers: list[str] | None = None
    scene: sw.Scene | None = None
    none_fit_labels: list[str] = field(default_factory=list)

    @property
    def caption(self) -> str | None:
        """The spec caption of the toy scene (``None`` for a real photo)."""
        return None if self.scene is None else self.scene.caption


@dataclass(frozen=True)
class _Spec:
    url: str
    description: str
    labels: tuple[str, ...]
    true_labels: tuple[str, ...]
    questions: tuple[str, ...]
    toy_seed: int  # the scene is shapesworld.sample_scene(toy_seed, n_objects=toy_objects)
    toy_objects: int
    toy_role: str
    toy_labels: tuple[str, ...]
    toy_questions: tuple[str, ...]


_COCO = "http://images.cocodataset.org/val2017/"

_EXAMPLES: dict[str, _Spec] = {
    "two cats on a couch": _Spec(
        url=_COCO + "000000039769.jpg",
        description="Two cats asleep on a pink couch, next to two remote controls (COCO val2017 #39769).",
        labels=("a photo of a cat", "a photo of a dog", "a photo of a bird"),
        true_labels=("a photo of a cat",),
        questions=("How many cats are there?", "What color is the couch?", "What are the cats lying on?"),
        toy_seed=24,
        toy_objects=2,
        toy_role="two objects of one kind, like the two cats",
        toy_labels=("a photo of a green circle", "a photo of a red square", "a photo of a blue triangle"),
        toy_questions=(
            "How many circles are there?",
            "How many shapes are there?",
            "Is there a green circle?",
            "Is there a square?",
        ),
    ),
    "a bear": _Spec(
        url=_COCO + "000000000285.jpg",
        description="A brown bear sitting in the grass, filling most of the picture (COCO val2017 #285).",
        labels=("a photo of a bear", "a photo of a teddy bear", "a photo of a dog"),
        true_labels=("a photo of a bear",),
        questions=("What animal is this?", "What color is the bear?", "Is the bear looking at the camera?"),
        toy_seed=1,
        toy_objects=1,
        toy_role="one large object, like the bear",
        toy_labels=("a photo of a red square", "a photo of a red circle", "a photo of a blue square"),
        toy_questions=("What color is the square?", "What shape is the red object?", "Is there a circle?"),
    ),
    "teddy bears": _Spec(
        url=_COCO + "000000000776.jpg",
        description="A bunch of teddy bears sitting together (COCO val2017 #776).",
        labels=("a photo of teddy bears", "a photo of a bear", "a photo of a cat"),
        true_labels=("a photo of teddy bears",),
        questions=("How many teddy bears are there?", "What are these?", "Are these real bears?"),
        toy_seed=784,
        toy_objects=3,
        toy_role="three objects of one shape in different colours, like the teddy bears",
        toy_labels=("a photo of a blue square", "a photo of a yellow square", "a photo of a red circle"),
        toy_questions=(
            "How many squares are there?",
            "How many shapes are there?",
            "What shape is the yellow object?",
            "Is there a red square?",
        ),
    ),
    "a bedroom": _Spec(
        url=_COCO + "000000000632.jpg",
        description="A bedroom with a bed and a bookcase (COCO val2017 #632); a second, different scene "
        "for two-image comparisons, where two labels are true at once.",
        labels=("a photo of a bedroom", "a photo of a bed", "a photo of a kitchen"),
        true_labels=("a photo of a bedroom", "a photo of a bed"),
        questions=("What room is this?", "Is there a bed?", "What furniture is in the room?"),
        toy_seed=21,
        toy_objects=2,
        toy_role="two different objects, so two labels are true at once",
        toy_labels=("a photo of a blue triangle", "a photo of a green square", "a photo of a red circle"),
        toy_questions=(
            "What color is the triangle?",
            "What shape is the green object?",
            "Is there a blue triangle?",
            "How many squares are there?",
        ),
    ),
}


# Labels that describe nothing in the real photos (for "what if no label fits?").
_NONE_FIT: dict[str, tuple[str, ...]] = {
    "two cats on a couch": ("a photo of a car", "a photo of a pizza", "a photo of a mountain"),
    "a bear": ("a photo of a car", "a photo of a city street", "a photo of a cake"),
    "teddy bears": ("a photo of a car", "a photo of a beach", "a photo of a laptop"),
    "a bedroom": ("a photo of a cat", "a photo of a beach", "a photo of a car"),
}


def none_fit_toy_labels(scene: sw.Scene, k: int = 3) -> list[str]:
    """``k`` colour-shape labels naming no object of ``scene``: first those sharing neither colour nor
    shape with the scene, and among equals those adding a colour and a shape not yet chosen."""
    colors = {o.color for o in scene.objects}
    shapes = {o.shape for o in scene.objects}
    present = {(o.color, o.shape) for o in scene.objects}
    remaining = [(c, s) for c in sw.COLORS for s in sw.SHAPES if (c, s) not in present]
    chosen: list[tuple[str, str]] = []

    def cost(cs: tuple[str, str]) -> tuple[int, int]:
        c, s = cs
        like_scene = (c in colors) + (s in shapes)
        like_chosen = (c in {oc for oc, _ in chosen}) + (s in {os_ for _, os_ in chosen})
        return like_scene, like_chosen

    while remaining and len(chosen) < k:
        best = min(remaining, key=cost)  # min keeps the first of equals: deterministic
        chosen.append(best)
        remaining.remove(best)
    return [f"a photo of a {c} {s}" for c, s in chosen]


class UnknownExampleError(KeyError):
    """No example has that name; the message lists the names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes and escapes
        return str(self.args[0])


def list_examples() -> list[str]:
    """The names ``get_example`` accepts."""
    return list(_EXAMPLES)


def image_cache_dir() -> Path:
    """Where downloaded example photos are kept: ``$VLM_COURSE_CACHE/images`` or ``~/.cache/vlm_course/images``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "vlm_course"
    return base / "images"


def _spec(name: str) -> tuple[str, _Spec]:
    key = " ".join(str(name).strip().lower().split())
    if key not in _EXAMPLES:
        names = ", ".join(repr(n) for n in _EXAMPLES)
        raise UnknownExampleError(f"no example named {name!r}; choose one of: {names} (see list_examples())")
    return key, _EXAMPLES[key]


def _is_cached(url: str) -> bool:
    """True when the photo is already in the image cache (no network needed)."""
    from . import images

    try:
        return images.cache_path(url, image_cache_dir()).is_file()
    except Exception:  # a changed or broken cache layout must not break the lesson
        return False


def true_toy_labels(scene: sw.Scene, labels: list[str]) -> list[str]:
    """The zero-shot labels (of the spec's three kinds) that describe some object of ``scene``."""
    true: set[str] = set()
    for obj in scene.objects:
        true |= {
            f"a photo of a {obj.color} {obj.shape}",
            f"a photo of a {obj.shape}",
            f"a photo of a {obj.color} shape",
        }
    return [label for label in labels if label in true]


def _toy_example(name: str, spec: _Spec) -> Example:
    scene = sw.sample_scene(spec.toy_seed, n_objects=spec.toy_objects)
    questions = list(spec.toy_questions)
    labels = list(spec.toy_labels)
    return Example(
        name=name,
        image=scene.render(),
        labels=labels,
        questions=questions,
        description=f"ShapesWorld stand-in for {name!r}: {scene.caption} ({spec.toy_role}).",
        source=f"shapesworld.sample_scene({spec.toy_seed}, n_objects={spec.toy_objects})",
        profile="toy",
        true_labels=true_toy_labels(scene, labels),
        answers=[sw.answer(scene, q) for q in questions],
        scene=scene,
        none_fit_labels=none_fit_toy_labels(scene),
    )


def _hub_example(name: str, spec: _Spec, timeout: float) -> Example:
    from .images import load_image

    image = load_image(spec.url, timeout=timeout, cache_dir=image_cache_dir())
    return Example(
        name=name,
        image=image,
        labels=list(spec.labels),
        questions=list(spec.questions),
        description=spec.description,
        source=spec.url,
        profile="hub",
        true_labels=list(spec.true_labels),
        none_fit_labels=list(_NONE_FIT[name]),
    )


def get_example(
    name: str, profile: str | None = None, *, timeout: float = DOWNLOAD_TIMEOUT_S, verbose: bool = False
) -> Example:
    """The lesson example ``name`` (see ``list_examples()``) for ``profile`` ("auto", "hub", "toy";
    default: ``$VLM_COURSE_PROFILE``, else "auto").

    "hub" downloads the photo (or reads it from the cache) and raises ``ImageLoadError`` when it
    cannot; "auto" falls back to the toy scene instead.
    """
    key, spec = _spec(name)
    chosen = current_profile(profile)
    if chosen == "hub" or (chosen == "auto" and (_is_cached(spec.url) or hub_reachable())):
        from .images import ImageLoadError

        try:
            example = _hub_example(key, spec, timeout)
        except ImageLoadError as e:
            if chosen == "hub":
                raise
            print(f"[vlm-course] example {key!r}: the photo could not be loaded ({e}); using its toy stand-in.")
            example = _toy_example(key, spec)
    else:
        example = _toy_example(key, spec)
    if verbose:
        print(f"[vlm-course] example {key!r}: profile '{example.profile}' -> {example.source}")
    return example


def toy_gallery(n: int, seed: int = 0, n_objects: int | None = None) -> list[tuple[sw.Scene, Image.Image]]:
    """``n`` ShapesWorld scenes with their rendered images, for exercises (deterministic per ``seed``)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [(scene, scene.render()) for scene in sw.sample_scenes(n, seed, n_objects)]


# --- your own picture, and the photo-like picture bundled with the course ----------------------------

SAMPLE_PHOTO = "shapes_photo.jpg"
SAMPLE_PHOTO_SCENE = (10, 2)  # shapesworld.sample_scene(10, n_objects=2): a red square and a yellow circle
SAMPLE_PHOTO_SIZE = (640, 480)
SAMPLE_PHOTO_QUALITY = 85
_PHOTO_QUESTIONS = (
    "How many shapes are there?",
    "What color is the circle?",
    "What shape is the red object?",
    "Is there a blue triangle?",
)
DEFAULT_QUESTION = "What is shown in this image?"
# Zero-shot labels for your own picture when you give none (pass your own for a better test).
DEFAULT_PHOTO_LABELS = ("a photo of a cat", "a photo of a dog", "a photo of a person", "a photo of food",
                        "a photo of a landscape")


def sample_photo_scene() -> sw.Scene:
    """The ShapesWorld scene the bundled photo shows (its answer key)."""
    seed, n_objects = SAMPLE_PHOTO_SCENE
    return sw.sample_scene(seed, n_objects=n_objects)


def sample_photo_path() -> Path:
    """The photo-like JPEG shipped with the package (``vlm_course/data/shapes_photo.jpg``)."""
    return Path(__file__).resolve().parent / "data" / SAMPLE_PHOTO


def render_photo(scene: sw.Scene, size: tuple[int, int] = SAMPLE_PHOTO_SIZE, seed: int = 0) -> Image.Image:
    """``scene`` as a photo-like picture: paper shapes with soft shadows on an unevenly lit table,
    shaded, slightly blurred and noisy, at ``size`` = (width, height). The scene's 224 px square fills
    the picture's height, centred, so processors that centre-crop see the whole scene. Deterministic
    per ``seed``; ``sample_photo_path()`` is ``render_photo(sample_photo_scene())`` saved as JPEG."""
    import numpy as np
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    width, height = size
    ss = 2  # drawn at twice the size, then reduced: smooth edges
    w, h = width * ss, height * ss
    scale = h / sw.CANVAS_SIZE
    left = (w - sw.CANVAS_SIZE * scale) / 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w, yy / h
    light = 1.06 - 0.16 * (0.6 * u + 0.4 * v)  # brighter towards the top left
    vignette = 1 - 0.35 * ((u - 0.45) ** 2 + (v - 0.4) ** 2)
    coarse = Image.fromarray(rng.normal(0, 1, (12, 16)).astype(np.float32)).resize((w, h), Image.Resampling.BICUBIC)
    paper = np.array(scene.background, np.float32) * np.array([1.0, 0.975, 0.93], np.float32)
    pixels = paper * (light * vignette)[..., None] + 3.0 * np.asarray(coarse)[..., None]

    def mask(objects: tuple[sw.ShapeObject, ...], dx: float = 0.0, dy: float = 0.0) -> Image.Image:
        m = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(m)
        for o in objects:
            sw.draw_shape(draw, o.shape, left + o.cx * scale + dx, o.cy * scale + dy, o.r * scale, 255)
        return m

    shadow = mask(scene.objects, 9 * ss, 11 * ss).filter(ImageFilter.GaussianBlur(9 * ss))
    pixels *= (1 - 0.38 * np.asarray(shadow, np.float32) / 255)[..., None]
    for o in scene.objects:
        inside = np.asarray(mask((o,)), np.float32)[..., None] / 255
        cx, cy, r = left + o.cx * scale, o.cy * scale, o.r * scale
        shade = 1.1 - 0.2 * np.clip(((xx - cx) + (yy - cy)) / (4 * r) + 0.5, 0, 1)
        color = np.array(sw.COLORS[o.color], np.float32) * (shade * light)[..., None]
        pixels = pixels * (1 - inside) + color * inside
    pixels += rng.normal(0, 2.5, pixels.shape).astype(np.float32)  # sensor noise
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    return image.filter(ImageFilter.GaussianBlur(0.6))


def write_sample_photo(path: Path | None = None) -> Path:
    """Render the bundled photo again and save it (maintainers: ``python -m vlm_course.examples``)."""
    target = Path(path) if path is not None else sample_photo_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    render_photo(sample_photo_scene()).save(target, format="JPEG", quality=SAMPLE_PHOTO_QUALITY)
    return target


def photo_example(
    source: str | os.PathLike | None = None,
    *,
    labels: list[str] | None = None,
    questions: list[str] | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Example:
    """Your own picture as a lesson example: ``source`` is a file path or an http(s) URL, loaded by
    ``images.load_image`` (a download is kept in ``image_cache_dir()``, so it works offline later).

    Without ``source``: the photo-like picture bundled with the course (``sample_photo_path()``), a
    photographed ShapesWorld scene, so it works offline and has an answer key (``scene``,
    ``true_labels``, ``answers``) in every profile. Your own picture has no key: ``answers`` and
    ``scene`` are ``None``; ``labels`` and ``questions`` are what you pass (default: a few everyday
    labels, ``DEFAULT_PHOTO_LABELS``, and one describe question).
    """
    from .images import ImageLoadError, load_image

    if source is None or str(source).strip() == "":
        scene = sample_photo_scene()
        path = sample_photo_path()
        photo_labels = [f"a photo of a {o.color} {o.shape}" for o in scene.objects] + none_fit_toy_labels(scene, 1)
        photo_questions = list(questions or _PHOTO_QUESTIONS)
        return Example(
            name="sample photo",
            image=load_image(path),
            labels=list(labels or photo_labels),
            questions=photo_questions,
            description=f"The course's photo-like picture: {scene.caption}, cut from paper, on a table "
            f"(rendered from ShapesWorld scene {SAMPLE_PHOTO_SCENE[0]}, so its answer key is known).",
            source=str(path),
            profile="photo",
            true_labels=true_toy_labels(scene, list(labels or photo_labels)),
            answers=[sw.answer(scene, q) for q in photo_questions],
            scene=scene,
            none_fit_labels=none_fit_toy_labels(scene),
        )
    text = str(source).strip()
    is_url = text.lower().startswith(("http://", "https://"))
    try:
        image = load_image(text if is_url else Path(text).expanduser(), timeout=timeout,
                           cache_dir=image_cache_dir() if is_url else None)
    except ImageLoadError as e:
        raise type(e)(f"{e} Or leave the source out (None) to use the photo bundled with the course.") from None
    return Example(
        name=text,
        image=image,
        labels=list(labels or DEFAULT_PHOTO_LABELS),
        questions=list(questions or [DEFAULT_QUESTION]),
        description=f"your picture: {text} ({image.width}x{image.height})",
        source=text,
        profile="photo",
    )


if __name__ == "__main__":
    print("wrote", write_sample_photo())
