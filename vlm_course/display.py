"""Plots for the lessons: zero-shot scores, image grids, similarity heatmaps, bar charts; and
``answer_mark``, the ✓/✗ a lesson prints next to a model's output when the answer key is known.

Every function builds its own figure with ``plt.subplots`` (safe with the non-interactive "Agg"
backend), touches no global matplotlib settings, and returns the ``Figure``. The one exception is
``use_korean_font()``, which ``quiet_notebook()`` calls: it makes a Hangul font matplotlib's
fallback, so a learner's own ``plt.title("한국어")`` is drawn too. In a notebook the
figure is drawn when the cell ends; if the call is the last line of a cell, end it with ``;``
(or assign the figure) so it is not drawn twice.

Text may contain Korean: an installed Hangul font is used, else the NanumGothic bundled with the
``koreanize-matplotlib`` dependency; without either, characters the
fonts cannot draw are shown as boxes, without "Glyph missing" warnings.
"""

from __future__ import annotations

import importlib.util
import math
import textwrap
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from PIL import Image

SCORE_KINDS = ("softmax", "sigmoid")
_SCORE_AXIS = {
    "softmax": "확률 (softmax: 점수의 합이 1)",
    "sigmoid": "확률 (sigmoid: 라벨마다 따로)",
}
_BAR = "#4C72B0"
_TOP = "#DD8452"
_MISSING = "\u25a1"  # a white square, in DejaVu Sans: what an undrawable character becomes
# Families known to hold Hangul, tried before scanning every installed font.
_HANGUL_FAMILIES = (
    "Noto Sans CJK KR", "Noto Sans KR", "NanumGothic", "Nanum Gothic", "Malgun Gothic",
    "Apple SD Gothic Neo", "AppleGothic", "UnDotum", "Baekmuk Gulim", "Source Han Sans KR",
)


# --- fonts -----------------------------------------------------------------------------------

def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except Exception:  # an unreadable font file: treat it as empty
        return frozenset()


@lru_cache(maxsize=1)
def _default_font() -> tuple[str, frozenset[int]]:
    path = font_manager.findfont(font_manager.FontProperties(), fallback_to_default=True)
    return font_manager.FontProperties(fname=path).get_name(), _charmap(path)


@lru_cache(maxsize=1)
def hangul_font() -> str | None:
    """The family name of a font that can draw Korean, or ``None``: an installed one, else the
    NanumGothic that the ``koreanize-matplotlib`` package ships (a course dependency), registered
    with matplotlib without importing that package (which would change global settings)."""
    return _installed_hangul_font() or _bundled_hangul_font()


def _installed_hangul_font() -> str | None:
    fonts = font_manager.fontManager.ttflist
    preferred = [f for name in _HANGUL_FAMILIES for f in fonts if f.name == name]
    for entry in preferred + [f for f in fonts if f not in preferred]:
        if "last resort" in entry.name.lower():  # draws every character as a placeholder box
            continue
        if 0xAC00 in _charmap(entry.fname):  # "가"
            return entry.name
    return None


def _bundled_hangul_font() -> str | None:
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "NanumGothic.ttf"
    if 0xAC00 not in _charmap(str(path)):
        return None
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def use_korean_font() -> str | None:
    """Make matplotlib draw Korean in every plot, the learner's own included; returns the Hangul family used.

    The default font stays first (Latin text looks as before) and the Hangul font (see
    ``hangul_font``) follows it in ``rcParams["font.family"]``, so characters the default font
    lacks come from it. Calling it again changes nothing. Without any Hangul font: ``None``, and
    settings are left alone.
    """
    import matplotlib

    family = hangul_font()
    if family is None:
        return None
    current = matplotlib.rcParams["font.family"]
    current = [current] if isinstance(current, str) else list(current)
    if family not in current:
        matplotlib.rcParams["font.family"] = [*current, family]
    return family


def _needs_fallback(text: str) -> bool:
    covered = _default_font()[1]
    return any(ord(ch) not in covered for ch in text if not ch.isspace())


def _text(text: Any) -> tuple[str, dict[str, Any]]:
    """``text`` made drawable, and the font keyword arguments to draw it with."""
    text = str(text)
    if not _needs_fallback(text):
        return text, {}
    family = hangul_font()
    if family is not None:
        return text, {"fontfamily": [_default_font()[0], family]}
    covered = _default_font()[1]
    return "".join(ch if ch.isspace() or ord(ch) in covered else _MISSING for ch in text), {}


def _texts(texts: Sequence[Any]) -> tuple[list[str], dict[str, Any]]:
    pairs = [_text(t) for t in texts]
    kwargs: dict[str, Any] = {}
    for _, kw in pairs:
        kwargs.update(kw)
    return [t for t, _ in pairs], kwargs


def set_title(target: Any, title: str | None, **kwargs: Any) -> None:
    """Set a figure's or axes' title, if any, in a font that draws its Korean."""
    if title is None:
        return
    text, font = _text(title)
    if isinstance(target, Figure):
        target.suptitle(text, **font, **kwargs)
    else:
        target.set_title(text, **font, **kwargs)


# --- input checks ----------------------------------------------------------------------------

def _to_array(values: Any, name: str) -> np.ndarray:
    """A float numpy array from a list, numpy array or torch tensor."""
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU or needing grad
        values = values.detach().float().cpu().numpy()
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers (a list, numpy array or tensor); got {type(values).__name__}") from None
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; check the model outputs")
    return array


def _scores(values: Any, name: str, n: int) -> np.ndarray:
    array = _to_array(values, name).squeeze()
    array = array.reshape(-1) if array.ndim == 0 else array
    if array.ndim != 1:
        raise ValueError(f"{name} must be one score per label (1-D); got shape {tuple(array.shape)}")
    if len(array) != n:
        raise ValueError(f"{name} has {len(array)} values but there are {n} labels; pass one score per label")
    if array.min() < 0 or array.max() > 1 + 1e-6:
        raise ValueError(
            f"{name} must be probabilities in [0, 1] (got {array.min():.3g} to {array.max():.3g}); "
            "apply softmax (CLIP) or sigmoid (SigLIP) to the logits first"
        )
    return array


def _labels(labels: Sequence[Any], name: str = "labels") -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ValueError(f"{name} must be a list of strings; got {type(labels).__name__}")
    if len(labels) == 0:
        raise ValueError(f"{name} is empty; pass at least one")
    return [str(x) for x in labels]


def _as_image(image: Any) -> Any:
    """Something ``imshow`` draws: a PIL image becomes an RGB array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if hasattr(image, "detach"):
        raise ValueError("pass images as PIL images or HxWx3 arrays, not tensors (use the original image)")
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ValueError(f"an image must be a PIL image or an HxW / HxWx3 array; got shape {array.shape}")
    return array


def _show_image(ax: Any, image: Any) -> None:
    ax.imshow(_as_image(image))
    ax.set_axis_off()


def _wrap(text: str, width: int) -> str:
    """Wrap each line of ``text`` at ``width`` characters, keeping the line breaks it already has."""
    width = max(width, 8)
    return "\n".join(wrapped for line in text.split("\n") for wrapped in (textwrap.wrap(line, width) or [""]))


# --- plots -----------------------------------------------------------------------------------

def _score_bars(ax: Any, labels: list[str], scores: np.ndarray, kind: str, sort: bool) -> None:
    order = np.argsort(-scores, kind="stable") if sort else np.arange(len(scores))
    names, font = _texts([labels[i] for i in order])
    values = scores[order]
    y = np.arange(len(values))
    colors = [_TOP if v == scores.max() else _BAR for v in values]
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, names, **font)
    ax.set_ylim(len(values) - 0.5, -0.5)  # the first label on top (idempotent on shared axes)
    ax.set_xlim(0, 1.15)
    label, label_font = _text(_SCORE_AXIS[kind])
    ax.set_xlabel(label, **label_font)
    for yi, v in zip(y, values, strict=True):
        ax.text(min(v, 1.0) + 0.01, yi, f"{v:.1%}", va="center", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)


def show_scores(
    image: Any,
    labels: Sequence[str],
    scores: Any,
    title: str | None = None,
    kind: str = "softmax",
    sort: bool = True,
) -> Figure:
    """The image next to horizontal bars of its zero-shot scores (``kind`` "softmax" or "sigmoid").

    ``scores`` are probabilities in [0, 1], one per label (list, array or tensor). Bars are sorted
    high to low unless ``sort=False``; the best label is highlighted. ``image=None`` draws bars only.
    """
    if kind not in SCORE_KINDS:
        raise ValueError(f"kind must be 'softmax' or 'sigmoid', got {kind!r}")
    labels = _labels(labels)
    values = _scores(scores, "scores", len(labels))
    height = max(2.6, 0.4 * len(labels) + 1.0)
    if image is None:
        fig, bars = plt.subplots(figsize=(6, height), layout="constrained")
    else:
        fig, (img_ax, bars) = plt.subplots(
            1, 2, figsize=(9.5, height), width_ratios=(1, 1.6), layout="constrained"
        )
        _show_image(img_ax, image)
    _score_bars(bars, labels, values, kind, sort)
    set_title(fig, title)
    return fig


def compare_scores(
    labels: Sequence[str],
    softmax_scores: Any,
    sigmoid_scores: Any,
    title: str | None = None,
    names: tuple[str, str] = ("CLIP (softmax)", "SigLIP (sigmoid)"),
) -> Figure:
    """Side-by-side bars: softmax scores (they share 1) against sigmoid scores (each on its own)."""
    labels = _labels(labels)
    soft = _scores(softmax_scores, "softmax_scores", len(labels))
    sig = _scores(sigmoid_scores, "sigmoid_scores", len(labels))
    height = max(2.6, 0.4 * len(labels) + 1.2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, height), sharey=True, layout="constrained")
    for ax, values, kind, name in ((left, soft, "softmax", names[0]), (right, sig, "sigmoid", names[1])):
        _score_bars(ax, labels, values, kind, sort=False)
        set_title(ax, name)
        set_title(ax, f"sum = {values.sum():.2f}", loc="right", fontsize=9, color="gray")
    right.tick_params(labelleft=False)
    set_title(fig, title)
    return fig


def show_image_grid(
    images: Sequence[Any],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 2.5,
) -> Figure:
    """Images in a grid of ``ncols`` columns (``size`` inches each), with wrapped titles or captions."""
    if isinstance(images, (Image.Image, np.ndarray)) or not isinstance(images, Sequence):
        raise ValueError("images must be a list of images; for one image pass [image]")
    if len(images) == 0:
        raise ValueError("images is empty; pass at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles; pass one title per image")
    if ncols < 1 or size <= 0:
        raise ValueError(f"ncols must be >= 1 and size > 0, got ncols={ncols}, size={size}")
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    title_lines = 0
    wrapped: list[str] = []
    if titles is not None:
        wrapped = [_wrap(str(t), int(size * 11)) for t in titles]
        title_lines = max(w.count("\n") + 1 for w in wrapped)
    row_height = size + 0.2 * title_lines
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * size, nrows * row_height), squeeze=False, layout="constrained"
    )
    for i, ax in enumerate(axes.flat):
        if i >= len(images):
            ax.set_axis_off()
            continue
        _show_image(ax, images[i])
        if wrapped:
            set_title(ax, wrapped[i], fontsize=9)
    return fig


def show_similarity_heatmap(
    similarity: Any,
    texts: Sequence[str],
    image_titles: Sequence[str] | None = None,
    images: Sequence[Any] | None = None,
    title: str | None = None,
    fmt: str = "{:.2f}",
) -> Figure:
    """A texts x images heatmap (rows: texts, columns: images), each cell annotated.

    Columns are labelled by ``image_titles`` and/or headed by thumbnails of ``images``; with neither,
    they are numbered. ``similarity`` is a 2-D list, array or tensor of shape (len(texts), n_images).
    """
    texts = _labels(texts, "texts")
    sim = _to_array(similarity, "similarity")
    if sim.ndim != 2:
        raise ValueError(f"similarity must be 2-D (texts x images); got shape {tuple(sim.shape)}")
    if sim.shape[0] != len(texts):
        hint = " (transpose it: rows are texts)" if sim.shape[1] == len(texts) else ""
        raise ValueError(f"similarity has {sim.shape[0]} rows but there are {len(texts)} texts{hint}")
    n_images = sim.shape[1]
    for name, items in (("image_titles", image_titles), ("images", images)):
        if items is not None and len(items) != n_images:
            raise ValueError(f"{name} has {len(items)} entries but similarity has {n_images} columns")
    cell = 0.9 if images is None else 1.1
    width = 3.0 + cell * n_images
    height = 1.0 + 0.45 * len(texts) + (cell if images is not None else 0)
    if images is None:
        fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    else:
        fig = plt.figure(figsize=(width, height), layout="constrained")
        grid = fig.add_gridspec(2, n_images, height_ratios=(cell, 0.45 * len(texts)))
        for j, image in enumerate(images):
            _show_image(fig.add_subplot(grid[0, j]), image)
        ax = fig.add_subplot(grid[1, :])
    mesh = ax.imshow(sim, cmap="viridis", aspect="auto")
    row_names, font = _texts(texts)
    ax.set_yticks(range(len(texts)), row_names, **font)
    columns = image_titles if image_titles is not None else [f"image {j + 1}" for j in range(n_images)]
    col_names, col_font = _texts([_wrap(str(c), 14) for c in columns])
    ax.set_xticks(range(n_images), col_names, **col_font)
    ax.tick_params(top=images is None, labeltop=images is None, bottom=images is not None,
                   labelbottom=images is not None)
    threshold = (sim.min() + sim.max()) / 2
    for i in range(sim.shape[0]):
        for j in range(n_images):
            ax.text(j, i, fmt.format(sim[i, j]), ha="center", va="center", fontsize=9,
                    color="black" if sim[i, j] > threshold else "white")
    fig.colorbar(mesh, ax=ax, shrink=0.8)
    set_title(fig, title)
    return fig


def show_bar_chart(
    values: Mapping[str, float],
    ylabel: str,
    title: str | None = None,
    fmt: str = "{:,.1f}",
) -> Figure:
    """Vertical bars for a few named numbers (memory footprints, speeds), each bar labelled."""
    if not isinstance(values, Mapping) or len(values) == 0:
        raise ValueError("values must be a non-empty dict of name -> number, e.g. {'fp32': 600, '4-bit': 160}")
    names, font = _texts([_wrap(str(k), 14) for k in values])
    numbers = _to_array(list(values.values()), "values")
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(names) + 1.5), 3.6), layout="constrained")
    bars = ax.bar(range(len(names)), numbers, color=_BAR)
    ax.set_xticks(range(len(names)), names, **font)
    label, label_font = _text(ylabel)
    ax.set_ylabel(label, **label_font)
    ax.bar_label(bars, labels=[fmt.format(v) for v in numbers], padding=2, fontsize=9)
    ax.margins(y=0.15)
    ax.spines[["top", "right"]].set_visible(False)
    set_title(ax, title)
    return fig


# --- answer keys -----------------------------------------------------------------------------

def _normalize_answer(text: str) -> str:
    return " ".join(str(text).strip().rstrip(".").lower().split())


def answer_mark(answer: str, key: str | Sequence[str] | None) -> str:
    """The mark to print next to a model's ``answer``: "✓" when it matches ``key`` (or any of several
    keys), "✗ (정답: ...)" when it does not, and "" when there is no key (a real photo in the hub profile).

    Case, surrounding spaces and a final period do not count: "Two." matches "two".
    """
    if key is None:
        return ""
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        raise ValueError("key is empty: pass the right answer(s), or None when there is no answer key")
    if _normalize_answer(answer) in {_normalize_answer(k) for k in keys}:
        return "✓"
    return "✗ (정답: " + " | ".join(repr(k) for k in keys) + ")"
