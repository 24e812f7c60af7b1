"""Training and evaluation data for the toy checkpoints, drawn from ShapesWorld."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from tqdm.auto import tqdm

from .. import shapesworld as sw

# Training streams use small seeds; evaluation uses seeds far away, never used in training.
EVAL_SEED = 2_000_000_007
SMOKE_STEPS = 3


@dataclass
class ScenePool:
    """Scenes with their processed ``pixel_values`` (computed once, reused every epoch)."""

    scenes: list[sw.Scene]
    pixel_values: torch.Tensor  # (N, 3, H, W) float32, exactly what the image processor gives

    def __len__(self) -> int:
        return len(self.scenes)

    def sample(self, batch_size: int, rng: random.Random) -> tuple[list[sw.Scene], torch.Tensor]:
        idx = [rng.randrange(len(self.scenes)) for _ in range(batch_size)]
        return [self.scenes[i] for i in idx], self.pixel_values[idx]


def make_pool(
    n: int,
    seed: int,
    process: Callable[[list[Image.Image]], torch.Tensor],
    n_objects: int | None = None,
    desc: str = "rendering scenes",
    chunk: int = 256,
    mixed_samplers: bool = False,
) -> ScenePool:
    """Render ``n`` scenes and run them through ``process`` (e.g. the model's image processor:
    ``lambda ims: proc(images=ims, return_tensors="pt").pixel_values``); with ``mixed_samplers`` half
    of them come from each spec sampler (``training_scenes``)."""
    scenes = training_scenes(n, seed, n_objects) if mixed_samplers else sw.sample_scenes(n, seed, n_objects)
    parts = []
    for start in tqdm(range(0, n, chunk), desc=desc, leave=False):
        parts.append(process([s.render() for s in scenes[start : start + chunk]]))
    return ScenePool(scenes, torch.cat(parts))


def eval_scenes(n: int, n_objects: int | None = None, offset: int = 0, sampler: str = "course") -> list[sw.Scene]:
    """Fresh evaluation scenes (seeds never used in training) from ``sw.SAMPLERS[sampler]``."""
    return sw.sample_scenes(n, EVAL_SEED + offset, n_objects, sampler=sampler)


def training_scenes(n: int, seed: int, n_objects: int | None = None) -> list[sw.Scene]:
    """``n`` training scenes, half from each spec sampler (so that no placement procedure's quirks
    are learnt as part of the world)."""
    half = n // 2
    return (sw.sample_scenes(half, seed, n_objects, sampler="course")
            + sw.sample_scenes(n - half, seed, n_objects, sampler="alt"))


NEAR_TIE_PX = 24  # two centres closer than this in x (of 224 px): the left-to-right order is hard to see


def min_x_gap(scene: sw.Scene) -> int | None:
    """The smallest horizontal distance between two object centres (``None`` for one object)."""
    xs = sorted(o.cx for o in scene.objects)
    return min((b - a for a, b in zip(xs, xs[1:])), default=None)


def touches_margin(scene: sw.Scene) -> bool:
    """Whether a shape touches the canvas edge (as the ``alt`` sampler draws a fifth of the coordinates)."""
    last = sw.CANVAS_SIZE - 1
    return any(o.cx - o.r <= 0 or o.cy - o.r <= 0 or o.cx + o.r >= last or o.cy + o.r >= last for o in scene.objects)


def is_hard(scene: sw.Scene) -> bool:
    """A scene whose description the toys get wrong most often: two centres within ``NEAR_TIE_PX`` in x,
    or a shape against a margin."""
    gap = min_x_gap(scene)
    return (gap is not None and gap < NEAR_TIE_PX) or touches_margin(scene)


def mirrored(scene: sw.Scene) -> sw.Scene:
    """The scene flipped left to right (a spec scene too: its caption lists the objects the other way round)."""
    last = sw.CANVAS_SIZE - 1
    return sw.Scene(tuple(sw.ShapeObject(o.shape, o.color, last - o.cx, o.cy, o.r) for o in scene.objects), scene.background)


def transposed(scene: sw.Scene) -> sw.Scene:
    """The scene with x and y exchanged for every centre (a spec scene too): the vertical order becomes the
    caption's order, so a model that reads y instead of x gets one of the two wrong."""
    return sw.Scene(tuple(sw.ShapeObject(o.shape, o.color, o.cy, o.cx, o.r) for o in scene.objects), scene.background)


def hard_training_scenes(n: int, seed: int, hard_share: float = 0.5) -> list[sw.Scene]:
    """``n`` training scenes for a hard-example stage: base scenes, half from each spec sampler, of which
    ``hard_share`` are multi-object scenes with a near-tied x order (``NEAR_TIE_PX``), each followed by its
    mirror image and its transpose (so ``n // 3`` base scenes; the pool stays a set of spec scenes). Scenes with
    two centres at one ``cx`` are left out (their order is undefined); fresh scenes fill the pool up to ``n``."""
    base_n = n // 3
    rng = random.Random(seed)
    base: list[sw.Scene] = []
    for k, sampler in enumerate(sw.SAMPLERS):
        quota = base_n // len(sw.SAMPLERS) + (k < base_n % len(sw.SAMPLERS))
        want_hard = round(quota * hard_share)
        hard: list[sw.Scene] = []
        plain: list[sw.Scene] = []
        while len(hard) < want_hard or len(plain) < quota - want_hard:
            scene = sw.SAMPLERS[sampler](rng)
            gap = min_x_gap(scene)
            if gap is not None and gap < NEAR_TIE_PX:
                if len(hard) < want_hard:
                    hard.append(scene)
            elif len(plain) < quota - want_hard:
                plain.append(scene)
        base += [s for pair in zip(hard, plain[:len(hard)]) for s in pair] + hard[len(plain):] + plain[len(hard):]
    distinct_x = lambda s: len({o.cx for o in s.objects}) == len(s.objects)  # noqa: E731 (else no defined order)
    out = [t for s in base for t in (s, mirrored(s), transposed(s)) if distinct_x(t)]
    return out + training_scenes(n - len(out), seed + 1) if len(out) < n else out


def sampler_suffix(sampler: str) -> str:
    """How a metric measured on ``sampler``'s scenes is named: ``describe_exact (alt sampler)``."""
    return "" if sampler == "course" else f" ({sampler} sampler)"


def on_every_sampler(evaluate: Callable[..., dict[str, float]], name: str, model_dir, n: int) -> dict[str, float]:
    """``evaluate(name, model_dir, n, sampler=...)`` on every spec sampler, metrics named by ``sampler_suffix``."""
    scores: dict[str, float] = {}
    for sampler in sw.SAMPLERS:
        scores.update({k + sampler_suffix(sampler): v for k, v in evaluate(name, model_dir, n, sampler=sampler).items()})
    return scores


def batched(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
