"""Exact parameter counts by building models on the meta device (shapes only, no memory, no weights)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import transformers
from transformers import PretrainedConfig, PreTrainedModel
from transformers import initialization as init

from ..catalogue import CourseModel, course_model

# Parameter-name fragments -> part of a vision-language model (first match wins).
_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vision", ("vision_model.", "vision_tower.", "visual_projection.")),
    ("bridge", ("qformer.", "query_tokens", "language_projection.", "multi_modal_projector.", "image_newline")),
)
PARTS = ("vision", "bridge", "language")


@dataclass(frozen=True)
class ParamCount:
    """Parameters of one model: the total and how they split into vision / bridge / language parts."""

    total: int
    parts: dict[str, int] = field(default_factory=dict)


def part_of(param_name: str) -> str:
    """``vision`` (image encoder), ``bridge`` (Q-Former / projector) or ``language`` (text side, LM head, scales)."""
    for part, fragments in _PARTS:
        if any(f in param_name for f in fragments):
            return part
    return "language"


def model_class(name: str) -> type[PreTrainedModel]:
    """The transformers class called ``name`` (e.g. ``"LlavaForConditionalGeneration"``)."""
    try:
        return getattr(transformers, name)
    except AttributeError as exc:
        raise ValueError(f"transformers {transformers.__version__} has no model class {name!r}") from exc


def resolve(model: str | CourseModel | PretrainedConfig, class_name: str | None = None) -> tuple[PretrainedConfig, str]:
    """A (fresh config, class name) pair from a catalogue record, a course hub id / toy name, or a config."""
    if isinstance(model, PretrainedConfig):
        if class_name is None:
            archs = getattr(model, "architectures", None) or []
            if not archs:
                raise ValueError("pass class_name= for a config without `architectures`")
            class_name = archs[0]
        return model, class_name
    record = course_model(model)
    return record.config(), class_name or record.model_class


def config_of(model: str | CourseModel | PretrainedConfig) -> PretrainedConfig:
    """The config of a catalogue record, hub id or toy name (a fresh object), or ``model`` itself."""
    return model if isinstance(model, PretrainedConfig) else course_model(model).config()


def meta_model(model: str | CourseModel | PretrainedConfig, class_name: str | None = None,
               dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The model built on the meta device in ``dtype``, as ``from_pretrained`` builds it before loading weights."""
    config, class_name = resolve(model, class_name)
    cls = model_class(class_name)
    # Shapes only: skip the (slow) random initialisation, then tie weights as from_pretrained does.
    with torch.device("meta"), init.no_init_weights():
        model = cls._from_config(config, dtype=dtype)
    model.tie_weights()
    return model


def count_parameters(model: str | CourseModel | PretrainedConfig | PreTrainedModel, class_name: str | None = None) -> ParamCount:
    """Exact parameter count (tied weights once) of a course checkpoint, a config, or a built model."""
    built = model if isinstance(model, torch.nn.Module) else meta_model(model, class_name)
    parts = dict.fromkeys(PARTS, 0)
    for name, p in built.named_parameters():
        parts[part_of(name)] += p.numel()
    return ParamCount(total=sum(parts.values()), parts=parts)
