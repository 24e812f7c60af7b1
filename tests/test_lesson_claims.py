"""Numbers the lessons' prose quotes are re-computed here with the helpers the notebooks call, so the
prose cannot drift from what the notebooks print (issue #17: ratios, token counts, memory, toy outputs).

Each test reads the number from the notebook's markdown (a regular expression over the sentence) and
checks it against the value computed the way the notebook computes it, without running the notebook.
A test fails with the sentence to fix when either side changes. The toy-output tests (01, 03, 04) follow
the shipped toy checkpoints: after a rebuilt toy, run the lesson, read its output and rewrite the sentence.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import nbformat
import pytest
import tomllib
import torch

ROOT = Path(__file__).resolve().parents[1]


@cache
def prose(prefix: str) -> str:
    """All markdown of the notebook ``notebooks/<prefix>_*.ipynb``, each run of white space one space."""
    (path,) = (ROOT / "notebooks").glob(f"{prefix}_*.ipynb")
    nb = nbformat.read(path, as_version=4)
    return " ".join(" ".join(c.source.split()) for c in nb.cells if c.cell_type == "markdown")


def quoted(prefix: str, pattern: str) -> tuple[str, ...]:
    """The groups of ``pattern`` in the notebook's prose (exactly one match)."""
    found = re.findall(pattern, prose(prefix))
    assert len(found) == 1, f"notebook {prefix}: expected one sentence matching {pattern!r}, found {len(found)}"
    return found[0] if isinstance(found[0], tuple) else (found[0],)


def in_range(value: float, low: str, high: str) -> bool:
    return float(low) <= round(value, 1) <= float(high)


# --- 06: how much 4-bit NF4 shrinks the real checkpoints (section 4's printed ratios) -----------


@cache
def nf4_ratio(hub_id: str) -> float:
    from vlm_course.sizes import weight_memory

    return weight_memory(hub_id, "fp16").total / weight_memory(hub_id, "nf4").total


LLAVA_7B = ["llava-hf/llava-1.5-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf"]
LESS_SHRINK = ["Salesforce/blip2-opt-2.7b", "llava-hf/llama3-llava-next-8b-hf"]


def test_06_nf4_ratios_match_section_4() -> None:
    low, high = quoted("06", r"7B LLaVA 두 모델은 약 (\d\.\d)~(\d\.\d)배")
    for hub_id in LLAVA_7B:
        assert in_range(nf4_ratio(hub_id), low, high), f"{hub_id}: fp16/nf4 = {nf4_ratio(hub_id):.2f}, prose says {low}~{high}"
    low2, high2 = quoted("06", r"Llama 3 8B 모델은 약 (\d\.\d)~(\d\.\d)배")
    for hub_id in LESS_SHRINK:
        assert in_range(nf4_ratio(hub_id), low2, high2), f"{hub_id}: fp16/nf4 = {nf4_ratio(hub_id):.2f}, prose says {low2}~{high2}"
    # section 2 quotes the 7B range again
    assert quoted("06", r"실제 7B LLaVA도 fp16 대비 약 (\d\.\d)~(\d\.\d)배") == (low, high)


def test_06_bitsandbytes_floor_matches_pyproject() -> None:
    (stated,) = quoted("06", r"이 과정이 설치하는 bitsandbytes\((\d+\.\d+) 이상\)")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    floors = [m.group(1) for d in deps if (m := re.match(r"bitsandbytes>=([\d.]+)", d))]
    assert floors == [stated], f"pyproject.toml's bitsandbytes floor {floors} vs lesson 06's {stated}"


# --- 05 / 07: image tokens and the KV cache (grouped-query attention) ------------------------------


def prompt_row(hub_id: str):
    """The fp16 prompt memory lesson 07's table prints (its default prompt: one 640x480 image)."""
    from vlm_course.sizes.fit import DEFAULT_PROMPT
    from vlm_course.sizes.prompt import prompt_memory

    return prompt_memory(hub_id, dtype="fp16", **DEFAULT_PROMPT)


def test_07_kv_cache_figures_match_the_table() -> None:
    from vlm_course.sizes.fit import DEFAULT_PROMPT, gib

    assert DEFAULT_PROMPT["image_size"] == (480, 640)  # the 640x480 photo of lessons 05 and 07
    tokens15, kv15, tokens_next, kv_next = quoted(
        "07", r"LLaVA-1\.5\((\d+) 토큰\)가 (\d+) MiB, LLaVA-NeXT\(([\d,]+) 토큰\)가 (\d+) MiB"
    )
    v15 = prompt_row("llava-hf/llava-1.5-7b-hf")
    assert (str(v15.image_tokens), gib(v15.kv_cache)) == (tokens15, f"{kv15} MiB")
    for hub_id in ("llava-hf/llava-v1.6-mistral-7b-hf", "llava-hf/llama3-llava-next-8b-hf"):
        row = prompt_row(hub_id)
        assert (f"{row.image_tokens:,}", gib(row.kv_cache)) == (tokens_next, f"{kv_next} MiB"), hub_id


def test_05_07_grouped_query_attention_heads() -> None:
    from vlm_course.sizes import config

    vicuna = config("llava-hf/llava-1.5-7b-hf").text_config
    mistral = config("llava-hf/llava-v1.6-mistral-7b-hf").text_config
    llama3 = config("llava-hf/llama3-llava-next-8b-hf").text_config
    (kv_next, kv_vicuna) = quoted("07", r"`num_key_value_heads=(\d+)`, Vicuna-7B는 (\d+)개")
    assert (mistral.num_key_value_heads, llama3.num_key_value_heads, vicuna.num_key_value_heads) == (
        int(kv_next), int(kv_next), int(kv_vicuna))
    (q05, kv05) = quoted("05", r"질의 헤드 (\d+)개마다 key/value 헤드를 따로 두지만\(`num_key_value_heads=(\d+)`\)")
    assert (vicuna.num_attention_heads, vicuna.num_key_value_heads) == (int(q05), int(kv05))
    (group,) = quoted("05", r"질의 헤드 (\d)개가 key/value 헤드 하나를 함께 씁니다")
    assert mistral.num_attention_heads // mistral.num_key_value_heads == int(group)
    # "토큰당 KV 캐시가 1/4": same layers and head size, a quarter of the key/value heads
    def per_token(c) -> int:
        return c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)

    assert per_token(vicuna) == 4 * per_token(mistral)
    assert "토큰당 KV 캐시가 1/4" in prose("05") and "토큰당 KV 캐시가 1/4" in prose("07")


def test_05_anyres_tokens_about_four_times() -> None:
    from vlm_course.sizes import image_tokens

    v15 = image_tokens("llava-hf/llava-1.5-7b-hf")
    nxt = image_tokens("llava-hf/llava-v1.6-mistral-7b-hf", (480, 640))
    assert v15 == 576 and round(nxt / v15) == 4
    assert "토큰이 약 4배이니" in prose("05")


# --- toy outputs the prose describes ---------------------------------------------------------------


def test_01_every_template_prints_p_1_00_in_the_toy() -> None:
    from transformers import CLIPModel, CLIPProcessor

    from vlm_course.examples import get_example
    from vlm_course.loadplan import plan_load

    assert "네 템플릿 모두 같은 라벨을 p=1.00으로 고릅니다" in prose("01")
    (scale,) = quoted("01", r"배율\(toy는 약 (\d+)\)")
    checkpoint = plan_load("openai/clip-vit-base-patch32").checkpoint
    model = CLIPModel.from_pretrained(checkpoint).eval()
    processor = CLIPProcessor.from_pretrained(checkpoint)
    assert round(float(model.logit_scale.detach().exp())) == int(scale)
    example = get_example("two cats on a couch", verbose=False)
    cores = [label.removeprefix("a photo of ").removeprefix("a ") for label in example.labels]
    best = set()
    for template in ["{}", "a photo of a {}", "a drawing of a {}", "this is not a {}"]:  # lesson 01, section 4
        batch = processor(text=[template.format(c) for c in cores], images=example.image, return_tensors="pt", padding=True)
        with torch.no_grad():
            p = model(**batch).logits_per_image.softmax(dim=1)[0]
        assert f"{float(p.max()):.2f}" == "1.00", f"lesson 01 section 4 says every template prints p=1.00; {template!r} does not"
        best.add(int(p.argmax()))
    assert len(best) == 1


def test_03_wrong_pipeline_echoes_the_question_in_the_toy() -> None:
    from transformers import pipeline

    from vlm_course.examples import get_example
    from vlm_course.loadplan import plan_load

    assert "`toy` 프로필의 출력은 질문을 그대로 되풀이하고 끝납니다" in prose("03")
    plan = plan_load("Salesforce/blip-vqa-base")
    wrong = pipeline("image-text-to-text", model=plan.checkpoint, dtype=plan.dtype, device_map=plan.device_map)
    example = get_example("two cats on a couch", verbose=False)
    for q in example.questions[:2]:  # lesson 03, section 6
        answer = wrong(images=example.image, text=q)[0]["generated_text"].strip()
        assert answer == q, f"lesson 03 section 6 says the toy echoes the question; it printed {answer!r}"


def test_04_temperature_sentence_matches_the_toy() -> None:
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    from vlm_course import shapesworld as sw
    from vlm_course.examples import get_example
    from vlm_course.loadplan import plan_load

    p_t1, p_t15 = quoted("04", r"온도 1에서 (0\.\d\d), 온도 1\.5에서도 약 (0\.\d\d)")
    assert "위 출력은 두 온도 모두 `no` 네 번입니다" in prose("04")
    checkpoint = plan_load("Salesforce/blip2-opt-2.7b").checkpoint
    model = Blip2ForConditionalGeneration.from_pretrained(checkpoint).eval()
    processor = Blip2Processor.from_pretrained(checkpoint)
    example = get_example("a bear", verbose=False)

    def inputs(prompt: str):
        return processor(images=example.image, text=prompt, return_tensors="pt")

    def ask(prompt: str, **kwargs) -> str:  # lesson 04's ask()
        batch = inputs(prompt)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=10, **kwargs)
        return processor.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    history: list[tuple[str, str]] = []
    for q in example.questions:  # section 5: the model's own answers build the history
        history.append((q, ask(sw.blip2_prompt(history, q))))
    prompt = sw.blip2_prompt(history[:-1], example.questions[-1])
    torch.manual_seed(0)
    for temperature in (0.7, 1.5):
        samples = [ask(prompt, do_sample=True, temperature=temperature, top_p=0.9) for _ in range(4)]
        assert samples == ["no"] * 4, f"lesson 04 says both temperatures print 'no' x4; T={temperature}: {samples}"
    with torch.no_grad():
        logits = model(**inputs(prompt)).logits[0, -1]
    no = processor.tokenizer(" no", add_special_tokens=False)["input_ids"]
    assert len(no) == 1
    for temperature, stated in ((1.0, p_t1), (1.5, p_t15)):
        p_no = f"{float((logits / temperature).softmax(-1)[no[0]]):.2f}"
        assert p_no == stated, f"lesson 04 quotes P(no) = {stated} at temperature {temperature}; the toy gives {p_no}"


@pytest.mark.parametrize("prefix", ["01", "02", "04", "06", "07"])
def test_plot_titles_are_korean(prefix: str) -> None:
    (path,) = (ROOT / "notebooks").glob(f"{prefix}_*.ipynb")
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    titles = re.findall(r"""\btitle=f?["']([^"']*)["']""", code)
    assert titles, f"{path.name} draws no titled plot"
    for title in titles:
        assert re.search(r"[\uac00-\ud7a3]", title), f"{path.name}: plot title {title!r} is not Korean"


def card_score(model: str, metric: str) -> float:
    """A score (percent) from the toy's model card table (``| metric | 88.0% |``)."""
    card = (ROOT / "vlm_course" / "toy_models" / model / "README.md").read_text(encoding="utf-8")
    (value,) = re.findall(rf"^\| {re.escape(metric)} \| ([\d.]+)% \|$", card, re.M)
    return float(value)


def test_05_compare_sentence_quotes_the_llava_next_card() -> None:
    compare, describe = quoted("05", r"정확히 맞는 비율이 ([\d.]+)%로, 한 장 설명의 ([\d.]+)%보다 낮습니다")
    assert float(compare) == card_score("llava-next", "compare_exact"), "05: the compare figure follows the card"
    assert float(describe) == card_score("llava-next", "describe_exact"), "05: the describe figure follows the card"
    a, b, product = quoted("05", r"많아야 ([\d.]+) × ([\d.]+) ≈ (\d+)%")
    assert a == b and float(a) == round(float(describe) / 100, 2)
    assert round(float(a) * float(b) * 100) == int(product)
    assert float(compare) < float(describe), "05 says compare is the toy's weakest task"
