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
