"""The course's models, described once.

* ``MODELS``: every real hub checkpoint the course names (hub id, pinned revision, toy name, task,
  the lessons that load it, download size, architecture config, published parameter count) and the
  laptop-size real checkpoints that stand in for a seed model too big for a laptop;
* ``TOYS``: the ShapesWorld toy checkpoints shipped in the package (transformers model and
  processor classes, which builder makes them, what they start from, build minutes).

``course_model(name)`` is the one lookup (hub id or toy name); an unknown name raises
``UnknownModelError`` listing the valid ones. ``profiles``, ``loadplan``, ``sizes``, ``toy``,
``toybuild`` and the download command all read these records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import PretrainedConfig

from . import architectures as arch

# Files a download fetches: weights as safetensors plus config / tokenizer / processor / chat
# template files (some repos also carry duplicate PyTorch .bin, TensorFlow and Flax weights).
ALLOW_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja")
ENCODER_TASKS = ("zero-shot-image-classification",)


class UnknownModelError(KeyError):
    """A name that is neither a course checkpoint nor a toy name."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


@dataclass(frozen=True)
class Toy:
    """A toy checkpoint in ``vlm_course/toy_models/<name>``, of the same classes as its real model."""

    name: str
    model_class: str
    processor_class: str
    builder: str  # module with build() / evaluate()
    depends_on: tuple[str, ...] = ()  # toys it starts from
    build_minutes: float = 1.0  # on one core, from the last full --jobs 2 build; orders parallel builds


@dataclass(frozen=True)
class CourseModel:
    """A real hub checkpoint: what it is, where the course uses it, how big it is."""

    hub_id: str
    toy_name: str  # the toy of the same classes (what the toy profile loads instead)
    task: str
    lessons: tuple[str, ...]  # lessons that load it (under the hub profile)
    download_bytes: int  # the files ALLOW_PATTERNS selects, as published
    stored_dtype: str  # dtype of the published safetensors
    build_config: Callable[[], PretrainedConfig]  # from the published config.json
    published_params: int | None = None
    revision: str | None = None  # None follows main; a commit hash pins the files
    stand_in: str | None = None  # hub id of a laptop-size real checkpoint of the same class
    stands_in_for: tuple[str, ...] = ()  # for a stand-in: the seed checkpoints it replaces

    @property
    def toy(self) -> Toy:
        return TOYS[self.toy_name]

    @property
    def model_class(self) -> str:
        return self.toy.model_class

    @property
    def processor_class(self) -> str:
        return self.toy.processor_class

    @property
    def generator(self) -> bool:
        """True for models that generate text token by token (speed matters per token)."""
        return self.task not in ENCODER_TASKS

    def config(self) -> PretrainedConfig:
        """A fresh architecture config (safe to modify)."""
        return self.build_config()


TOYS: dict[str, Toy] = {
    t.name: t
    for t in (
        Toy("clip", "CLIPModel", "CLIPProcessor", "vlm_course.toybuild.clip", build_minutes=4.5),
        Toy("siglip", "SiglipModel", "SiglipProcessor", "vlm_course.toybuild.siglip", build_minutes=6.5),
        Toy("blip-captioning", "BlipForConditionalGeneration", "BlipProcessor", "vlm_course.toybuild.blip",
            build_minutes=7),
        Toy("blip-vqa", "BlipForQuestionAnswering", "BlipProcessor", "vlm_course.toybuild.blip",
            ("blip-captioning",), 3.5),
        Toy("blip2", "Blip2ForConditionalGeneration", "Blip2Processor", "vlm_course.toybuild.blip2",
            ("blip-captioning",), 12.5),
        Toy("llava", "LlavaForConditionalGeneration", "LlavaProcessor", "vlm_course.toybuild.llava", ("clip",), 14.5),
        Toy("llava-next", "LlavaNextForConditionalGeneration", "LlavaNextProcessor", "vlm_course.toybuild.llava",
            ("llava",), 10),
    )
}

_STAND_IN_LLAVA = "llava-hf/llava-interleave-qwen-0.5b-hf"

MODELS: dict[str, CourseModel] = {
    m.hub_id: m
    for m in (
        CourseModel("openai/clip-vit-base-patch32", "clip", "zero-shot-image-classification", ("01", "02", "08"),
                    607_000_000, "float32", arch.clip_vit_base_patch32, 151_277_313),
        CourseModel("openai/clip-vit-large-patch14", "clip", "zero-shot-image-classification", ("01",),
                    1_713_000_000, "float32", arch.clip_vit_large_patch14, 427_600_000),
        CourseModel("google/siglip-base-patch16-224", "siglip", "zero-shot-image-classification", ("02",),
                    814_000_000, "float32", arch.siglip_base_patch16_224, 203_200_000),
        CourseModel("Salesforce/blip-image-captioning-base", "blip-captioning", "image-text-to-text", ("03",),
                    991_000_000, "float32", arch.blip_image_captioning_base),
        CourseModel("Salesforce/blip-vqa-base", "blip-vqa", "visual-question-answering", ("03",),
                    1_540_000_000, "float32", arch.blip_vqa_base),
        CourseModel("Salesforce/blip2-opt-2.7b", "blip2", "image-text-to-text", ("04",),
                    15_497_000_000, "float32", arch.blip2_opt_2_7b, 3_740_000_000),
        CourseModel("llava-hf/llava-1.5-7b-hf", "llava", "image-text-to-text", ("05", "06", "09"),
                    14_129_000_000, "float16", arch.llava_1_5_7b, 7_060_000_000, stand_in=_STAND_IN_LLAVA),
        CourseModel("llava-hf/llava-v1.6-mistral-7b-hf", "llava-next", "image-text-to-text", ("05",),
                    15_136_000_000, "float16", arch.llava_v1_6_mistral_7b, 7_570_000_000),
        # Named in lessons 05 and 06 for its size; no lesson loads it.
        CourseModel("llava-hf/llama3-llava-next-8b-hf", "llava-next", "image-text-to-text", (),
                    16_720_000_000, "float16", arch.llama3_llava_next_8b, 8_360_000_000),
        # Laptop-size LLaVA: Qwen1.5-0.5B + SigLIP-so400m; 864,031,264 parameters (tied embeddings), bf16 files.
        CourseModel(_STAND_IN_LLAVA, "llava", "image-text-to-text", (),
                    1_740_000_000, "bfloat16", arch.llava_interleave_qwen_0_5b, 864_031_264,
                    stands_in_for=("llava-hf/llava-1.5-7b-hf",)),
    )
}


def course_model(name: str | CourseModel) -> CourseModel:
    """The record of a hub id, or of a toy name's first (seed) checkpoint; ``UnknownModelError`` otherwise."""
    if isinstance(name, CourseModel):
        return name
    if name in MODELS:
        return MODELS[name]
    for m in MODELS.values():
        if m.toy_name == name and not m.stands_in_for:
            return m
    valid = "\n  ".join([*MODELS, *(f"{t} (toy name)" for t in TOYS)])
    raise UnknownModelError(f"{name!r} is not a course model. Valid names (hub id or toy name):\n  {valid}")


def is_course_model(name: str) -> bool:
    """True for a catalogue hub id or toy name."""
    return name in MODELS or name in TOYS


def seed_models() -> list[CourseModel]:
    """The checkpoints the lessons were written for (stand-ins left out)."""
    return [m for m in MODELS.values() if not m.stands_in_for]


def normalize_lesson(lesson: str | int) -> str:
    """``5`` / ``"5"`` / ``"05"`` -> ``"05"``."""
    text = str(lesson).strip()
    return text.zfill(2) if text.isdigit() else text


def lesson_models(lesson: str | int) -> list[CourseModel]:
    """The seed checkpoints lesson ``lesson`` loads, in catalogue order (empty if it loads none)."""
    wanted = normalize_lesson(lesson)
    return [m for m in MODELS.values() if wanted in m.lessons]


def lessons() -> dict[str, list[CourseModel]]:
    """Lesson number -> the seed checkpoints it loads, for every lesson that loads one."""
    numbers = sorted({n for m in MODELS.values() for n in m.lessons})
    return {n: lesson_models(n) for n in numbers}
