"""The size table of the course's real checkpoints for this machine (``vlm-course estimate``, lesson 07)."""

from __future__ import annotations

from dataclasses import dataclass

from ..catalogue import MODELS, CourseModel, course_model
from .count import count_parameters
from .fit import DEFAULT_PROMPT, GiB, Machine, gib, memory_needed, this_machine
from .memory import DTYPES, normalize_dtype, weight_memory
from .prompt import prompt_memory


@dataclass(frozen=True)
class Cell:
    """One model in one dtype: weight bytes, total bytes needed, and whether that fits the GPU / RAM."""

    weights: int
    needed: int
    fits_gpu: bool
    fits_ram: bool

    @property
    def mark(self) -> str:
        return ("G" if self.fits_gpu else "") + ("R" if self.fits_ram else "") or "-"


@dataclass(frozen=True)
class Row:
    model: str
    params: int
    cells: dict[str, Cell]
    image_tokens: int
    kv_cache: int  # fp16 bytes for the assumed prompt
    activations: int


def human_count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def rows(models: list[str | CourseModel] | None = None, dtypes: tuple[str, ...] = DTYPES, machine: Machine | None = None,
         **prompt) -> list[Row]:
    """One ``Row`` per model (default: every course checkpoint); fit is judged on memory available now."""
    machine = machine or this_machine()
    prompt = {**DEFAULT_PROMPT, **prompt}
    out = []
    for model in map(course_model, models or list(MODELS)):  # resolved once per model
        cells = {}
        for d in map(normalize_dtype, dtypes):
            need = memory_needed(model, d, **prompt).total
            cells[d] = Cell(weights=weight_memory(model, d).total, needed=need,
                            fits_gpu=bool(machine.gpu_free) and need <= machine.gpu_free,
                            fits_ram=need <= machine.ram_available)
        extra = prompt_memory(model, dtype="fp16", **prompt)
        out.append(Row(model.hub_id, count_parameters(model).total, cells, extra.image_tokens, extra.kv_cache, extra.activations))
    return out


def render(table: list[Row], machine: Machine | None = None, **prompt) -> str:
    """The rows as text: weights per dtype with fit marks, then the prompt's own memory."""
    machine = machine or this_machine()
    p = {**DEFAULT_PROMPT, **prompt}
    h, w = p["image_size"]
    dtypes = list(table[0].cells) if table else []
    name_w = max([len(r.model) for r in table] + [5])
    lines = [
        f"This machine: {machine.describe()}",
        f"Weights per dtype (int8/nf4: the rest in fp16, bitsandbytes scales included). Mark: G fits the GPU, "
        f"R fits the RAM available now, - neither; judged on weights + prompt memory + {gib(GiB // 2)} runtime.",
        "",
        f"{'model':<{name_w}}  {'params':>8}  " + "  ".join(f"{d:>12}" for d in dtypes),
    ]
    for r in table:
        cells = "  ".join(f"{gib(c.weights):>9} {c.mark:<2}" for c in r.cells.values())
        lines.append(f"{r.model:<{name_w}}  {human_count(r.params):>8}  {cells}")
    lines += [
        "",
        f"Prompt memory in fp16: one {w}x{h} image, {p['prompt_tokens']} text tokens, {p['new_tokens']} new tokens "
        f"(KV cache exact; activations a rough prefill peak).",
        f"{'model':<{name_w}}  {'image tokens':>12}  {'KV cache':>10}  {'activations':>11}",
    ]
    for r in table:
        kv = gib(r.kv_cache) if r.kv_cache else "-"
        lines.append(f"{r.model:<{name_w}}  {r.image_tokens:>12}  {kv:>10}  {gib(r.activations):>11}")
    return "\n".join(lines)
