"""Korean style of the lessons: particles attached after Latin words, code and numbers, and one
term per concept (see ``docs/glossary.md``).

Korean spelling writes a particle (조사) or the copula (이다) right after the word it belongs to,
also when that word is Latin, code or a number: "CLIP은", "`doctor`는", "transformers 5에서",
"1입니다". This lint checks every Korean notebook cell (markdown, and the strings and comments of
code cells) and every Korean Markdown page under ``docs/`` and ``solutions/``.

The same rules fix the files: ``python tests/test_korean_style.py --fix`` rewrites notebooks
(through nbformat, cell ids kept) and pages in place (``--fix more.md ...`` also other Markdown files); it is idempotent, so after a merge conflict
take the other side's file and run it again.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GLOSSARY = ROOT / "docs" / "glossary.md"
HANGUL = re.compile(r"[\uac00-\ud7a3]")

# Particles, particle chains and copula forms that follow a word without a space. Only whole
# Hangul words count, so "이 모델" (demonstrative) or "이미지" are never touched.
PARTICLES = """
은 는 이 가 을 를 와 과 의 에 에게 에서 으로 로 도 만 나 이나 처럼 보다 까지 부터 마다 만큼 씩
라는 이라는 라고 이라고 라 이라 라면 이라면 란 이란 로는 으로는 로도 으로도 로만 으로만 로서 으로서
에는 에서는 에서도 에도 에만 에서만 에서의 에게는 와는 과는 와의 과의 만으로 만을 만이 부터는 까지만
이다 입니다 이고 이며 이지만 이어야 이었습니다 였습니다 인데 인가 인지 이므로 이면 면 이에요 예요
""".split()
# What a particle may follow: a Latin letter or digit, the end of inline code or emphasis, a closing
# bracket or quote, a percent sign, or a placeholder's closing brace (not a list's "* " or a
# quote's "> ").
BEFORE = r"(?:(?<=[A-Za-z0-9`)\]}%'\"_])|(?<=\S\*))"
SPACED_PARTICLE = re.compile(
    rf"{BEFORE} (?=(?:{'|'.join(sorted(PARTICLES, key=len, reverse=True))})(?![\uac00-\ud7a3]))"
)
SPACED_PERCENT = re.compile(r"(?<=[0-9십백]) %")

# One term per concept: (banned pattern, the term to use). docs/glossary.md explains each.
BANNED = [
    (re.compile(r"직접 해보기"), "직접 해 보기"),
    (re.compile(r"장난감"), "toy (toy 모델, toy CLIP)"),
    (re.compile(r"(?:절대|최대|최소|결과|근사|대표|함수)값"), "사이시옷: 절댓값, 최댓값, 최솟값, 결괏값, 근삿값, 대푯값, 함숫값"),
    (re.compile(r"시그모이드"), "sigmoid"),
    (re.compile(r"어텐션"), "attention"),
    (re.compile(r"소프트맥스"), "softmax"),
    (re.compile(r"랩탑"), "랩톱"),
    (re.compile(r"\b0[0-9] 장(?:에서| 참고)"), "`01_clip`에서 (the notebook's name)"),
]
# Fixes for the banned terms and for context-bound ones (노트북 = a Jupyter notebook, 랩톱 = a
# laptop; 레슨 is not used). Each is (old, new); re-running them changes nothing.
REPLACEMENTS = [
    ("직접 해보기", "직접 해 보기"),
    ("장난감 CLIP", "toy CLIP"),
    ("장난감 LLaVA", "toy LLaVA"),
    ("장난감 체크포인트", "toy 체크포인트"),
    ("장난감 모델", "toy 모델"),
    ("절대값", "절댓값"),
    ("**시그모이드**", "**sigmoid**"),
    ("어텐션 포함", "attention 포함"),
    ("느린 노트북", "느린 랩톱"),
    ("같은 클래스의 노트북 크기 실제 모델", "같은 클래스의 랩톱 크기 실제 모델"),
    ("보통의 노트북에는", "보통의 랩톱에는"),
    ("노트북 크기의 작은 공개 체크포인트", "랩톱 크기의 작은 공개 체크포인트"),
    ("GPU가 없는 노트북 20-40대", "GPU가 없는 랩톱 20-40대"),
    ("보통의 GPU 나 노트북에", "보통의 GPU나 랩톱에"),
    ("보통의 GPU나 노트북에", "보통의 GPU나 랩톱에"),
    ("각 레슨은", "각 노트북은"),
    ("레슨마다", "노트북마다"),
    ("그 레슨이", "그 노트북이"),
    ("01 장에서 CLIP", "`01_clip`에서 CLIP"),
    ("05 장에서 LLaVA", "`05_llava`에서 LLaVA"),
    ("(01 장 참고)", "(`01_clip` 참고)"),
]


def fix_text(text: str) -> str:
    """``text`` with the replacements applied and particles attached."""
    for old, new in REPLACEMENTS:
        text = text.replace(old, new)
    text = SPACED_PERCENT.sub("%", text)
    return SPACED_PARTICLE.sub("", text)


def style_problems(text: str, where: str, *, check_terms: bool = True) -> list[str]:
    """One line per style problem in ``text`` (empty: none)."""
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in SPACED_PARTICLE.finditer(line):
            problems.append(f"{where} line {lineno}: spaced particle in {line[max(0, m.start() - 20):m.end() + 6]!r}")
        for m in SPACED_PERCENT.finditer(line):
            problems.append(f"{where} line {lineno}: space before % in {line[max(0, m.start() - 10):m.end() + 6]!r}")
        if check_terms:
            for banned, use in BANNED:
                for m in banned.finditer(line):
                    problems.append(f"{where} line {lineno}: {m.group()!r}: write {use}")
    return problems


def korean_pages() -> list[Path]:
    """README.md and the Markdown pages under docs/ and solutions/ that contain Korean."""
    pages = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md")) + sorted((ROOT / "solutions").rglob("*.md"))
    return [p for p in pages if HANGUL.search(p.read_text(encoding="utf-8"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def fix_files(extra: list[Path] = ()) -> list[str]:
    """Rewrite notebooks, Korean pages and ``extra`` Markdown files in place; return the paths that changed."""
    changed = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        dirty = False
        for cell in nb.cells:
            if HANGUL.search(cell.source):
                new = fix_text(cell.source)
                if new != cell.source:
                    cell.source, dirty = new, True
        if dirty:
            nbformat.write(nb, path)
            changed.append(_rel(path))
    for path in korean_pages() + [p.resolve() for p in extra]:
        text = path.read_text(encoding="utf-8")
        new = text if path == GLOSSARY else fix_text(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(_rel(path))
    return changed


# CommonMark (JupyterLab, GitHub) closes ``**`` only where it is not squeezed between punctuation and a
# letter: "**환각(hallucination)**입니다" prints its asterisks. Put the particle after the bold word
# ("**환각**(hallucination)입니다").
COMMONMARK = MarkdownIt("commonmark").enable("table")
STRAY_EMPHASIS = re.compile(r"\*\*|(?<![\w\s])\*(?=[\uac00-\ud7a3])")


def unrendered_emphasis(markdown: str, where: str) -> list[str]:
    """One line per ``**`` or ``*`` that a CommonMark renderer shows as literal asterisks."""
    problems = []
    for token in COMMONMARK.parse(markdown):
        for child in token.children or []:
            if child.type == "text" and STRAY_EMPHASIS.search(child.content):
                problems.append(f"{where}: emphasis does not render in {child.content[:80]!r}")
    return problems


# --- the rules themselves ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("CLIP 은 두 인코더", "CLIP은 두 인코더"),
        ("`doctor` 는 점검합니다", "`doctor`는 점검합니다"),
        ("transformers 5 에서는", "transformers 5에서는"),
        ("합이 항상 1 입니다.", "합이 항상 1입니다."),
        ("**ShapesWorld** 라는 세계", "**ShapesWorld**라는 세계"),
        ('"a photo of a cat" 이 1위', '"a photo of a cat"이 1위'),
        ("O(N log N) 이 더해지고", "O(N log N)이 더해지고"),
        ("정확도가 80% 면", "정확도가 80%면"),
        ("거의 0 % 가 나옵니다", "거의 0%가 나옵니다"),
        ("장난감 CLIP 의 임베딩", "toy CLIP의 임베딩"),
    ],
)
def test_fix_attaches_particles_and_unifies_terms(before: str, after: str) -> None:
    assert fix_text(before) == after
    assert not style_problems(after, "example")
    assert style_problems(before, "example")


@pytest.mark.parametrize(
    "text",
    [
        "3. 이 과정에서 만날 모델",  # demonstrative 이 after a list number's period
        "CLIP 이미지 인코더",  # a noun that starts like a particle
        "LLaVA 계열 모델",
        "48 장의 이미지",
        "`hub` 프로필에서는",
        "ViT-B/32 도움말",  # 도 inside a longer word
    ],
)
def test_words_that_are_not_particles_stay_apart(text: str) -> None:
    assert fix_text(text) == text
    assert not style_problems(text, "example")


def test_fix_is_idempotent() -> None:
    text = "SigLIP 의 sigmoid 는 모두 낮게 줄 수 있고, 합은 1 이 아닙니다. 직접 해보기"
    once = fix_text(text)
    assert fix_text(once) == once
    assert once == "SigLIP의 sigmoid는 모두 낮게 줄 수 있고, 합은 1이 아닙니다. 직접 해 보기"


# --- the files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_korean_style(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        if HANGUL.search(cell.source):
            problems += style_problems(cell.source, f"{path.name} cell {i} ({cell.cell_type})")
    assert not problems, (
        "Korean style (docs/glossary.md); run `python tests/test_korean_style.py --fix` to fix:\n"
        + "\n".join(problems)
    )


def test_korean_pages_style() -> None:
    problems = []
    for path in korean_pages():
        # The glossary names the banned variants on purpose; its particles are checked all the same.
        problems += style_problems(path.read_text(encoding="utf-8"), _rel(path), check_terms=path != GLOSSARY)
    assert not problems, (
        "Korean style (docs/glossary.md); run `python tests/test_korean_style.py --fix` to fix:\n"
        + "\n".join(problems)
    )


@pytest.mark.parametrize(
    ("markdown", "renders"),
    [
        ("흔한 **환각(hallucination)**입니다.", False),
        ("흔한 **환각**(hallucination)입니다.", True),
        ("**`doctor`**는 점검합니다.", False),
        ("`doctor`는 **점검**합니다. 2 * 3 = 6", True),
    ],
)
def test_unrendered_emphasis_rule(markdown: str, renders: bool) -> None:
    assert (not unrendered_emphasis(markdown, "example")) == renders


def test_emphasis_renders_in_lessons_and_pages() -> None:
    problems = []
    for path in NOTEBOOKS:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "markdown":
                problems += unrendered_emphasis(cell.source, f"{path.name} cell {i}")
    for path in korean_pages():
        problems += unrendered_emphasis(path.read_text(encoding="utf-8"), _rel(path))
    assert not problems, "\n".join(problems)


def test_glossary_names_every_banned_variant() -> None:
    text = GLOSSARY.read_text(encoding="utf-8")
    for word in ["직접 해보기", "장난감", "절대값", "시그모이드", "어텐션", "레슨", "랩톱", "노트북"]:
        assert word in text, f"docs/glossary.md should explain {word!r}"


if __name__ == "__main__":
    if sys.argv[1:2] != ["--fix"]:
        sys.exit("usage: python tests/test_korean_style.py --fix [MORE.md ...]   (rewrites notebooks, Korean docs/ pages "
                 "and the Markdown files named, in place)")
    for name in fix_files([Path(a) for a in sys.argv[2:]]):
        print("fixed", name)
