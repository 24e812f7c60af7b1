"""The course's reading list, one record per link: ``docs/links.md`` and each lesson's "더 읽을거리".

Every link lives once in ``LINKS`` (papers as arXiv ids paired with their titles in ``PAPERS``, so a
wrong id is visible next to the title it should have); the Hub page of every checkpoint the course
names comes from ``vlm_course.catalogue``. ``READING`` picks the links each lesson ends with.
``python -m vlm_course.links --write`` regenerates ``docs/links.md`` and the last markdown cell of
every notebook from these records; ``tests/test_links.py`` checks that both match and that every
link is well formed (no network: https, a known host, an arXiv id pattern, no duplicates).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from vlm_course.catalogue import MODELS

READING_TITLE = "## 더 읽을거리"
ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}$")

# arXiv id -> the paper's title as arXiv lists it (checked by hand against the abstract page).
PAPERS: dict[str, str] = {
    "2103.00020": "Learning Transferable Visual Models From Natural Language Supervision",
    "2303.15343": "Sigmoid Loss for Language Image Pre-Training",
    "2201.12086": "BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language "
                  "Understanding and Generation",
    "2301.12597": "BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image Encoders and "
                  "Large Language Models",
    "2304.08485": "Visual Instruction Tuning",
    "2310.03744": "Improved Baselines with Visual Instruction Tuning",
    "2407.07895": "LLaVA-NeXT-Interleave: Tackling Multi-image, Video, and 3D in Large Multimodal Models",
    "2305.14314": "QLoRA: Efficient Finetuning of Quantized LLMs",
    "2208.07339": "LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale",
    "1702.08734": "Billion-scale similarity search with GPUs",
    "2311.16502": "MMMU: A Massive Multi-discipline Multimodal Understanding and Reasoning Benchmark "
                  "for Expert AGI",
    "2307.06281": "MMBench: Is Your Multi-modal Model an All-around Player?",
    "1612.00837": "Making the V in VQA Matter: Elevating the Role of Image Understanding in Visual "
                  "Question Answering",
    "1504.00325": "Microsoft COCO Captions: Data Collection and Evaluation Server",
}


@dataclass(frozen=True)
class Link:
    """One link: a short key, the section it belongs to, its title, its address and why to read it."""

    key: str
    section: str
    title: str
    url: str
    note: str = ""

    @property
    def arxiv_id(self) -> str | None:
        prefix = "https://arxiv.org/abs/"
        return self.url.removeprefix(prefix) if self.url.startswith(prefix) else None

    def markdown(self) -> str:
        shown = f"[{self.title}]({self.url})"
        if self.arxiv_id:
            shown += f" (arXiv:{self.arxiv_id})"
        return f"- {shown}" + (f" — {self.note}" if self.note else "")


# Section key -> the heading on docs/links.md, in page order.
SECTIONS: dict[str, str] = {
    "docs": "공식 문서",
    "papers": "논문",
    "blogs": "블로그 글",
    "hub": "Hugging Face Hub: 모델 컬렉션과 체크포인트",
    "benchmarks": "평가 벤치마크",
    "code": "원본 코드 저장소",
}

_TF = "https://huggingface.co/docs/transformers"


def _paper(key: str, arxiv_id: str, note: str) -> Link:
    return Link(key, "papers", PAPERS[arxiv_id], f"https://arxiv.org/abs/{arxiv_id}", note)


_LINKS: tuple[Link, ...] = (
    # -- official documentation -----------------------------------------------------------------
    Link("doc-transformers", "docs", "Transformers 문서", f"{_TF}/index",
         "모델 클래스, 프로세서, `pipeline`, `generate`의 공식 설명서"),
    Link("doc-clip", "docs", "CLIP (Transformers 모델 문서)", f"{_TF}/model_doc/clip",
         "`CLIPModel`, `CLIPProcessor`, `get_image_features` / `get_text_features`"),
    Link("doc-siglip", "docs", "SigLIP (Transformers 모델 문서)", f"{_TF}/model_doc/siglip",
         "`SiglipModel`과 `padding=\"max_length\"`가 필요한 이유"),
    Link("doc-blip", "docs", "BLIP (Transformers 모델 문서)", f"{_TF}/model_doc/blip",
         "캡션 생성(`BlipForConditionalGeneration`)과 VQA(`BlipForQuestionAnswering`)"),
    Link("doc-blip2", "docs", "BLIP-2 (Transformers 모델 문서)", f"{_TF}/model_doc/blip-2",
         "`Blip2ForConditionalGeneration`: Q-Former와 고정된 LLM"),
    Link("doc-llava", "docs", "LLaVA (Transformers 모델 문서)", f"{_TF}/model_doc/llava",
         "`LlavaForConditionalGeneration`, 채팅 템플릿, 여러 이미지 입력"),
    Link("doc-llava-next", "docs", "LLaVA-NeXT (Transformers 모델 문서)", f"{_TF}/model_doc/llava_next",
         "any-res 타일과 `image_sizes`"),
    Link("doc-chat-templates", "docs", "Multimodal chat templates (Transformers)", f"{_TF}/chat_templating_multimodal",
         "이미지와 글이 섞인 대화를 `apply_chat_template`으로 프롬프트로 바꾸기"),
    Link("doc-pipelines", "docs", "Pipelines (Transformers)", f"{_TF}/main_classes/pipelines",
         "작업 이름 하나로 모델을 쓰는 `pipeline`의 모든 작업"),
    Link("doc-task-zero-shot", "docs", "Zero-shot image classification (Transformers 작업 가이드)",
         f"{_TF}/tasks/zero_shot_image_classification", "CLIP류 모델로 라벨 없이 분류하기"),
    Link("doc-task-captioning", "docs", "Image captioning (Transformers 작업 가이드)", f"{_TF}/tasks/image_captioning",
         "캡션 모델을 내 데이터로 미세 조정하는 예"),
    Link("doc-task-vqa", "docs", "Visual question answering (Transformers 작업 가이드)",
         f"{_TF}/tasks/visual_question_answering", "VQA 모델 사용과 미세 조정"),
    Link("doc-task-image-text-to-text", "docs", "Image-text-to-text (Transformers 작업 가이드)",
         f"{_TF}/tasks/image_text_to_text", "LLaVA 같은 VLM을 `pipeline`과 `generate`로 쓰기"),
    Link("doc-bnb-transformers", "docs", "bitsandbytes (Transformers 양자화 문서)", f"{_TF}/quantization/bitsandbytes",
         "`BitsAndBytesConfig`로 8비트·4비트(NF4) 불러오기"),
    Link("doc-bnb-install", "docs", "bitsandbytes 설치 안내", "https://huggingface.co/docs/bitsandbytes/installation",
         "지원하는 하드웨어와 백엔드(CUDA, CPU, Apple Silicon 등)"),
    Link("doc-hub-env", "docs", "huggingface_hub 환경 변수",
         "https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables",
         "`HF_HUB_OFFLINE`, `HF_HOME` 등 캐시와 오프라인 설정"),
    # -- papers -------------------------------------------------------------------------------
    _paper("paper-clip", "2103.00020", "CLIP: 이미지-텍스트 대조 학습과 제로샷 분류"),
    _paper("paper-siglip", "2303.15343", "SigLIP: softmax 대신 쌍마다 sigmoid 손실"),
    _paper("paper-blip", "2201.12086", "BLIP: 캡션 생성과 이해를 한 모델로, CapFilt로 웹 데이터 정제"),
    _paper("paper-blip2", "2301.12597", "BLIP-2: 고정된 이미지 인코더와 LLM을 Q-Former로 잇기"),
    _paper("paper-llava", "2304.08485", "LLaVA: GPT-4로 만든 지시 데이터로 시각 지시 튜닝"),
    _paper("paper-llava-1.5", "2310.03744", "LLaVA-1.5: 2층 MLP 프로젝터와 학술 VQA 데이터"),
    _paper("paper-llava-interleave", "2407.07895",
           "메모리가 부족할 때 쓰는 랩톱 크기 모델 `llava-interleave-qwen-0.5b`의 논문"),
    _paper("paper-qlora", "2305.14314", "QLoRA와 4비트 NormalFloat(NF4), 이중 양자화"),
    _paper("paper-llm-int8", "2208.07339", "8비트 행렬 곱과 이상치(outlier) 분해"),
    _paper("paper-faiss", "1702.08734", "FAISS: 대규모 최근접 이웃 검색"),
    _paper("paper-mmmu", "2311.16502", "MMMU: 대학 수준 전공 지식이 필요한 멀티모달 문제"),
    _paper("paper-mmbench", "2307.06281", "MMBench: 객관식 능력별 평가와 CircularEval"),
    _paper("paper-vqav2", "1612.00837", "VQAv2: 같은 질문에 답이 다른 이미지 쌍으로 언어 편향 줄이기"),
    _paper("paper-coco-captions", "1504.00325", "COCO Captions: 캡션 데이터와 BLEU·CIDEr 평가 서버"),
    # -- blog posts ---------------------------------------------------------------------------
    Link("blog-llava-next", "blogs", "LLaVA-NeXT: Improved reasoning, OCR, and world knowledge",
         "https://llava-vl.github.io/blog/2024-01-30-llava-next/",
         "LLaVA-NeXT(1.6) 발표 글: 4배 많은 픽셀, any-res, Vicuna·Mistral·Yi 언어 모델"),
    Link("blog-hf-vlp", "blogs", "A Dive into Vision-Language Models (Hugging Face 블로그)",
         "https://huggingface.co/blog/vision_language_pretraining", "대조 학습, PrefixLM, cross-attention 등 VLM 학습 방식 정리"),
    Link("blog-hf-vlms", "blogs", "Vision Language Models Explained (Hugging Face 블로그)",
         "https://huggingface.co/blog/vlms", "VLM의 구조, 고르는 법, transformers로 쓰고 미세 조정하기"),
    Link("blog-hf-vlms-2025", "blogs", "Vision Language Models (Better, faster, stronger) (Hugging Face 블로그)",
         "https://huggingface.co/blog/vlms-2025", "2025년의 VLM 흐름: 작은 모델, MoE, 추론 모델, any-to-any"),
    Link("blog-hf-blip2", "blogs", "Zero-shot image-to-text generation with BLIP-2 (Hugging Face 블로그)",
         "https://huggingface.co/blog/blip-2", "BLIP-2로 캡션, 프롬프트 캡션, VQA, 대화"),
    Link("blog-hf-4bit", "blogs",
         "Making LLMs even more accessible with bitsandbytes, 4-bit quantization and QLoRA (Hugging Face 블로그)",
         "https://huggingface.co/blog/4bit-transformers-bitsandbytes", "NF4, 이중 양자화, 4비트로 불러오기와 QLoRA 미세 조정"),
    Link("blog-hf-8bit", "blogs",
         "A Gentle Introduction to 8-bit Matrix Multiplication for transformers at scale (Hugging Face 블로그)",
         "https://huggingface.co/blog/hf-bitsandbytes-integration", "LLM.int8()을 그림으로: absmax·영점 양자화와 이상치"),
    # -- Hub collections (the checkpoints themselves come from the catalogue, below) --------------
    Link("hub-clip", "hub", "OpenAI의 CLIP 체크포인트", "https://huggingface.co/openai?search_models=clip",
         "ViT-B/32, ViT-B/16, ViT-L/14 등"),
    Link("hub-siglip", "hub", "SigLIP 컬렉션 (Google)",
         "https://huggingface.co/collections/google/siglip-659d5e62f0ae1a57ae0e83ba", "해상도·크기별 SigLIP 체크포인트"),
    Link("hub-blip", "hub", "BLIP 컬렉션 (Salesforce)",
         "https://huggingface.co/collections/Salesforce/blip-models-65242f40f1491fbf6a9e9472", "캡션, VQA, 검색용 BLIP"),
    Link("hub-blip2", "hub", "BLIP-2 컬렉션 (Salesforce)",
         "https://huggingface.co/collections/Salesforce/blip2-models-65242f91b4c4b4a32e5cb652", "OPT, Flan-T5를 붙인 BLIP-2"),
    Link("hub-llava-1.5", "hub", "LLaVA-1.5 컬렉션 (llava-hf)",
         "https://huggingface.co/collections/llava-hf/llava-15-65f762d5b6941db5c2ba07e0", "transformers 형식의 LLaVA-1.5 7B·13B"),
    Link("hub-llava-next", "hub", "LLaVA-NeXT 컬렉션 (llava-hf)",
         "https://huggingface.co/collections/llava-hf/llava-next-65f75c4afac77fd37dbbe6cf",
         "llava-hf가 transformers 형식으로 올린 LLaVA-NeXT(1.6) 체크포인트"),
    # -- benchmarks ----------------------------------------------------------------------------
    Link("bench-mmmu", "benchmarks", "MMMU 벤치마크와 리더보드", "https://mmmu-benchmark.github.io/",
         "30개 과목 11.5K 문제"),
    Link("bench-mmbench", "benchmarks", "MMBench (open-compass)", "https://github.com/open-compass/MMBench",
         "영어·중국어 객관식 평가 데이터와 안내"),
    Link("bench-vqa", "benchmarks", "VQA 데이터셋과 챌린지 (VQAv2)", "https://visualqa.org/", "데이터, 평가 방식, 리더보드"),
    Link("bench-coco-captions", "benchmarks", "COCO Captions 과제", "https://cocodataset.org/#captions-2015",
         "캡션 데이터와 평가 서버"),
    Link("bench-open-vlm", "benchmarks", "Open VLM Leaderboard (OpenCompass)",
         "https://huggingface.co/spaces/opencompass/open_vlm_leaderboard", "공개 VLM들을 같은 벤치마크로 비교한 표"),
    Link("bench-vlmevalkit", "benchmarks", "VLMEvalKit", "https://github.com/open-compass/VLMEvalKit",
         "MMMU, MMBench 등 여러 벤치마크를 한 명령으로 돌리는 평가 도구"),
    # -- original code -------------------------------------------------------------------------
    Link("code-clip", "code", "openai/CLIP", "https://github.com/openai/CLIP", "CLIP 원본 구현과 가중치"),
    Link("code-big-vision", "code", "google-research/big_vision", "https://github.com/google-research/big_vision",
         "SigLIP 원본 구현"),
    Link("code-blip", "code", "salesforce/BLIP", "https://github.com/salesforce/BLIP", "BLIP 원본 구현"),
    Link("code-lavis", "code", "salesforce/LAVIS", "https://github.com/salesforce/LAVIS", "BLIP-2 원본 구현"),
    Link("code-llava", "code", "haotian-liu/LLaVA", "https://github.com/haotian-liu/LLaVA", "LLaVA, LLaVA-1.5 학습 코드"),
    Link("code-bitsandbytes", "code", "bitsandbytes", "https://github.com/bitsandbytes-foundation/bitsandbytes",
         "8비트·4비트 양자화 라이브러리"),
    Link("code-faiss", "code", "facebookresearch/faiss", "https://github.com/facebookresearch/faiss",
         "대규모 벡터 검색 라이브러리"),
)


def _checkpoint_links() -> tuple[Link, ...]:
    """The Hub page of every checkpoint the catalogue names, with the lessons that load it."""
    links = []
    for m in MODELS.values():
        if m.lessons:
            note = "강의 " + ", ".join(m.lessons) + "에서 불러옵니다"
        elif m.stands_in_for:
            note = "메모리가 부족할 때 " + ", ".join(m.stands_in_for) + " 대신 쓰는 랩톱 크기 모델"
        else:
            note = "강의에서 크기 비교에만 나옵니다"
        links.append(Link(f"model-{m.hub_id}", "hub", m.hub_id, f"https://huggingface.co/{m.hub_id}", note))
    return tuple(links)


LINKS: dict[str, Link] = {link.key: link for link in (*_LINKS, *_checkpoint_links())}

# Lesson number -> the keys of its "더 읽을거리", in order.
READING: dict[str, tuple[str, ...]] = {
    "00": ("blog-hf-vlms", "blog-hf-vlp", "doc-transformers", "doc-task-image-text-to-text", "paper-clip",
           "paper-llava", "doc-hub-env"),
    "01": ("paper-clip", "doc-clip", "doc-task-zero-shot", "hub-clip", "model-openai/clip-vit-base-patch32",
           "model-openai/clip-vit-large-patch14", "code-clip"),
    "02": ("paper-siglip", "doc-siglip", "hub-siglip", "model-google/siglip-base-patch16-224", "code-big-vision",
           "paper-clip"),
    "03": ("paper-blip", "doc-blip", "doc-task-captioning", "doc-task-vqa", "hub-blip",
           "model-Salesforce/blip-image-captioning-base", "model-Salesforce/blip-vqa-base", "code-blip",
           "paper-coco-captions", "paper-vqav2"),
    "04": ("paper-blip2", "blog-hf-blip2", "doc-blip2", "hub-blip2", "model-Salesforce/blip2-opt-2.7b",
           "code-lavis"),
    "05": ("paper-llava", "paper-llava-1.5", "blog-llava-next", "doc-llava", "doc-llava-next",
           "doc-chat-templates", "hub-llava-1.5", "hub-llava-next", "model-llava-hf/llava-1.5-7b-hf",
           "model-llava-hf/llava-v1.6-mistral-7b-hf", "model-llava-hf/llava-interleave-qwen-0.5b-hf",
           "paper-llava-interleave", "code-llava"),
    "06": ("paper-qlora", "blog-hf-4bit", "paper-llm-int8", "blog-hf-8bit", "doc-bnb-transformers",
           "doc-bnb-install", "code-bitsandbytes", "model-llava-hf/llama3-llava-next-8b-hf"),
    "07": ("doc-pipelines", "doc-task-image-text-to-text", "blog-hf-vlms-2025", "paper-mmmu", "bench-mmmu",
           "paper-mmbench", "bench-mmbench", "paper-vqav2", "bench-vqa", "paper-coco-captions",
           "bench-coco-captions", "bench-open-vlm", "bench-vlmevalkit"),
    "08": ("paper-clip", "doc-clip", "paper-faiss", "code-faiss"),
    "09": ("doc-chat-templates", "doc-llava", "paper-llava-1.5", "blog-hf-vlms"),
}


def lesson_links(lesson: str) -> list[Link]:
    """The links lesson ``lesson`` ("00".."09") ends with; KeyError names the valid lessons."""
    if lesson not in READING:
        raise KeyError(f"no reading list for lesson {lesson!r}; lessons: {', '.join(READING)}")
    return [LINKS[key] for key in READING[lesson]]


def render_cell(lesson: str) -> str:
    """The markdown of lesson ``lesson``'s last cell."""
    lines = [READING_TITLE, "",
             "이 강의와 이어지는 공식 문서, 논문, 글입니다. 모든 링크는 "
             "[docs/links.md](../docs/links.md)에 한데 모여 있습니다.", ""]
    lines += [link.markdown() for link in lesson_links(lesson)]
    return "\n".join(lines)


def render_page() -> str:
    """The whole of ``docs/links.md``."""
    lines = [
        "# 더 읽을거리: 이 과정의 모든 링크",
        "",
        "강의에 나오는 공식 문서, 논문, 블로그 글, 모델 컬렉션, 평가 벤치마크를 한곳에 모았습니다. 각 강의 노트북의 "
        "마지막 셀(\"더 읽을거리\")은 이 목록에서 그 강의에 맞는 링크만 골라 보여 줍니다.",
        "",
        "이 페이지와 노트북의 마지막 셀은 `vlm_course/links.py`에서 만들어집니다. 링크를 고치거나 더하려면 그 파일을 "
        "고친 뒤 `python -m vlm_course.links --write`를 실행하세요(손으로 고치면 `tests/test_links.py`가 "
        "알려 줍니다). 논문은 arXiv 번호와 제목을 함께 적어 두었으니, 번호가 틀리면 제목과 맞지 않는 것이 바로 보입니다.",
    ]
    for section, heading in SECTIONS.items():
        lines += ["", f"## {heading}", ""]
        lines += [link.markdown() for link in LINKS.values() if link.section == section]
    lines += ["", "## 강의별 더 읽을거리", "", "| 강의 | 링크 |", "|---|---|"]
    for lesson, keys in READING.items():
        lines.append(f"| {lesson} | " + ", ".join(f"[{LINKS[k].title}]({LINKS[k].url})" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def is_reading_cell(cell) -> bool:
    """True for a lesson's "더 읽을거리" cell (a markdown cell under that heading)."""
    return cell.cell_type == "markdown" and cell.source.startswith(READING_TITLE)


def _notebooks(root: Path) -> dict[str, Path]:
    return {path.name[:2]: path for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def write(root: Path) -> list[Path]:
    """Write ``docs/links.md`` and every lesson's last cell under ``root``; return the files changed."""
    import nbformat

    changed = []
    page = root / "docs" / "links.md"
    if not page.exists() or page.read_text(encoding="utf-8") != render_page():
        page.write_text(render_page(), encoding="utf-8")
        changed.append(page)
    for lesson, path in _notebooks(root).items():
        nb = nbformat.read(path, as_version=4)
        text = render_cell(lesson)
        if nb.cells and is_reading_cell(nb.cells[-1]) and nb.cells[-1].source == text:
            continue
        old = [cell for cell in nb.cells if is_reading_cell(cell)]  # wherever it is now: moved to the end
        cell = old[0] if old else nbformat.v4.new_markdown_cell(text)  # keeps its id
        cell.source = text
        nb.cells = [c for c in nb.cells if not is_reading_cell(c)] + [cell]
        nbformat.write(nb, path)
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write docs/links.md and the notebooks' last cells")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root (default: here)")
    args = parser.parse_args(argv)
    if not args.write:
        print(render_page(), end="")
        return 0
    if not (args.root / "notebooks").is_dir():
        print(f"error: no notebooks/ in {args.root}: run this from the repository root or pass --root")
        return 2
    for path in write(args.root):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
