"""Lesson plots: right numbers in the right places, clear errors, no warnings when drawn."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from vlm_course import display
from vlm_course import shapesworld as sw

LABELS = sw.zero_shot_labels("shape")  # circle, square, triangle


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def images():
    return [s.render(64) for s in sw.sample_scenes(6, seed=3)]


def draw(fig: Figure) -> None:
    """Render the figure as a notebook would, failing on any warning (e.g. "Glyph missing")."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()


def bar_widths(ax) -> list[float]:
    return [round(p.get_width(), 6) for p in ax.patches]


def tick_texts(ax, axis: str = "y") -> list[str]:
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


def test_show_scores_sorts_and_highlights(images):
    fig = display.show_scores(images[0], LABELS, torch.tensor([0.2, 0.7, 0.1]), title="zero-shot")
    draw(fig)
    assert isinstance(fig, Figure)
    img_ax, bars = fig.axes
    assert len(img_ax.images) == 1
    assert bar_widths(bars) == [0.7, 0.2, 0.1]
    assert tick_texts(bars) == ["a photo of a square", "a photo of a circle", "a photo of a triangle"]
    colors = [p.get_facecolor() for p in bars.patches]
    assert colors[0] != colors[1] == colors[2]  # only the best label highlighted
    assert "70.0%" in [t.get_text() for t in bars.texts]
    assert fig._suptitle.get_text() == "zero-shot"
    assert "sigmoid" not in bars.get_xlabel()


def test_show_scores_unsorted_sigmoid_without_image():
    fig = display.show_scores(None, LABELS, np.array([0.9, 0.8, 0.01]), kind="sigmoid", sort=False)
    draw(fig)
    (bars,) = fig.axes
    assert bar_widths(bars) == [0.9, 0.8, 0.01]
    assert tick_texts(bars) == LABELS
    assert "sigmoid" in bars.get_xlabel()


@pytest.mark.parametrize(
    "scores, match",
    [
        ([0.5, 0.5], "2 values but there are 3 labels"),
        ([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]], "1-D"),
        ([2.5, -1.0, 0.3], "apply softmax"),
        ([0.1, float("nan"), 0.2], "NaN"),
    ],
)
def test_show_scores_rejects_bad_scores(images, scores, match):
    with pytest.raises(ValueError, match=match):
        display.show_scores(images[0], LABELS, scores)


def test_show_scores_rejects_bad_kind_and_labels(images):
    with pytest.raises(ValueError, match="'softmax' or 'sigmoid'"):
        display.show_scores(images[0], LABELS, [0.2, 0.7, 0.1], kind="relu")
    with pytest.raises(ValueError, match="list of strings"):
        display.show_scores(images[0], "a photo of a cat", [1.0])


def test_compare_scores_keeps_label_order():
    fig = display.compare_scores(LABELS, [0.7, 0.2, 0.1], torch.tensor([0.9, 0.8, 0.01]))
    draw(fig)
    left, right = fig.axes
    assert bar_widths(left) == [0.7, 0.2, 0.1]
    assert bar_widths(right) == [0.9, 0.8, 0.01]
    assert tick_texts(left) == LABELS
    assert left.get_ylim() == right.get_ylim() == (2.5, -0.5)  # first label on top in both panels
    assert left.get_title() == "CLIP (softmax)" and right.get_title() == "SigLIP (sigmoid)"
    assert left.get_title(loc="right") == "sum = 1.00"
    assert right.get_title(loc="right") == "sum = 1.71"
    with pytest.raises(ValueError, match="sigmoid_scores has 2 values"):
        display.compare_scores(LABELS, [0.7, 0.2, 0.1], [0.9, 0.8])


def test_image_grid_any_count(images):
    captions = [s.caption for s in sw.sample_scenes(6, seed=3)]
    fig = display.show_image_grid(images, captions, ncols=4, size=2.0)
    draw(fig)
    assert len(fig.axes) == 8
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 6
    assert [ax.get_title().replace("\n", " ") for ax in shown] == captions
    assert all(len(line) <= 22 for ax in shown for line in ax.get_title().split("\n"))
    single = display.show_image_grid(images[:1])
    assert len(single.axes) == 1


def test_image_grid_keeps_explicit_line_breaks(images):
    fig = display.show_image_grid(images[:2], ["prompt: a photo of\nreply: a red circle", "one line"], size=3.0)
    first, second = (ax.get_title() for ax in fig.axes)
    assert first.split("\n") == ["prompt: a photo of", "reply: a red circle"]
    assert second == "one line"


def test_image_grid_errors(images):
    with pytest.raises(ValueError, match="6 images but 2 titles"):
        display.show_image_grid(images, ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        display.show_image_grid([])
    with pytest.raises(ValueError, match=r"pass \[image\]"):
        display.show_image_grid(images[0])


def test_similarity_heatmap_annotated(images):
    sim = np.array([[0.31, 0.12], [0.05, 0.27], [0.10, 0.11]])
    fig = display.show_similarity_heatmap(sim, LABELS, image_titles=["first", "second"])
    draw(fig)
    ax = fig.axes[0]
    assert np.allclose(ax.images[0].get_array(), sim)
    assert [t.get_text() for t in ax.texts] == ["0.31", "0.12", "0.05", "0.27", "0.10", "0.11"]
    assert tick_texts(ax) == LABELS
    assert tick_texts(ax, "x") == ["first", "second"]


def test_similarity_heatmap_with_thumbnails(images):
    sim = torch.rand(3, 4)
    fig = display.show_similarity_heatmap(sim, LABELS, images=images[:4])
    draw(fig)
    thumbnails = [ax for ax in fig.axes if ax.images and ax.images[0].get_array().ndim == 3]
    assert len(thumbnails) == 4
    heat = [ax for ax in fig.axes if ax.texts]
    assert len(heat) == 1 and len(heat[0].texts) == 12


def test_similarity_heatmap_errors(images):
    with pytest.raises(ValueError, match="transpose"):
        display.show_similarity_heatmap(np.zeros((2, 3)), LABELS)
    with pytest.raises(ValueError, match="images has 1 entries but similarity has 2 columns"):
        display.show_similarity_heatmap(np.zeros((3, 2)), LABELS, images=images[:1])
    with pytest.raises(ValueError, match="2-D"):
        display.show_similarity_heatmap(np.zeros(3), LABELS)


def test_bar_chart():
    values = {"fp32": 605.3, "fp16": 302.7, "4-bit": 110.0}
    fig = display.show_bar_chart(values, "MB", "memory footprint")
    draw(fig)
    (ax,) = fig.axes
    assert [round(p.get_height(), 6) for p in ax.patches] == [605.3, 302.7, 110.0]
    assert tick_texts(ax, "x") == ["fp32", "fp16", "4-bit"]
    assert [t.get_text() for t in ax.texts] == ["605.3", "302.7", "110.0"]
    assert ax.get_ylabel() == "MB" and ax.get_title() == "memory footprint"
    with pytest.raises(ValueError, match="non-empty dict"):
        display.show_bar_chart({}, "MB", "nothing")


def test_korean_text_without_a_hangul_font_draws_boxes_silently(images, monkeypatch):
    monkeypatch.setattr(display, "hangul_font", lambda: None)
    fig = display.show_scores(images[0], ["고양이 사진", "a photo of a dog"], [0.8, 0.2], title="CLIP 점수")
    draw(fig)
    assert fig._suptitle.get_text() == "CLIP \u25a1\u25a1"
    assert tick_texts(fig.axes[1]) == ["\u25a1\u25a1\u25a1 \u25a1\u25a1", "a photo of a dog"]


def test_korean_text_falls_back_to_the_bundled_nanum_gothic(monkeypatch):
    monkeypatch.setattr(display, "_installed_hangul_font", lambda: None)
    display.hangul_font.cache_clear()
    try:
        assert display.hangul_font() == "NanumGothic"
    finally:
        display.hangul_font.cache_clear()


def test_korean_text_is_drawn_with_a_hangul_font(images):
    family = display.hangul_font()
    assert family is not None  # installed, or the koreanize-matplotlib dependency's NanumGothic
    fig = display.show_bar_chart({"원본": 600.0, "4비트": 150.0}, "MB", "메모리")
    draw(fig)
    ax = fig.axes[0]
    assert ax.get_title() == "메모리"
    assert family in ax.title.get_fontfamily()


def test_use_korean_font_makes_a_learners_own_plot_draw_korean():
    import matplotlib

    with matplotlib.rc_context():
        family = display.use_korean_font()
        assert family == display.hangul_font() and family is not None
        assert display.use_korean_font() == family
        assert list(matplotlib.rcParams["font.family"]).count(family) == 1, "calling it again changes nothing"
        fig, ax = plt.subplots()
        ax.set_title("한국어 제목")  # plain matplotlib, no course helper
        ax.set_xlabel("Latin text stays in the default font")
        draw(fig)  # fails on "Glyph missing"


def test_use_korean_font_without_any_hangul_font_leaves_settings_alone(monkeypatch):
    import matplotlib

    monkeypatch.setattr(display, "hangul_font", lambda: None)
    with matplotlib.rc_context():
        before = list(matplotlib.rcParams["font.family"])
        assert display.use_korean_font() is None
        assert list(matplotlib.rcParams["font.family"]) == before


def test_answer_mark():
    from vlm_course.display import answer_mark

    assert answer_mark("two", "two") == "✓"
    assert answer_mark(" Two. ", "two") == "✓"  # case, spaces and a final period do not count
    assert answer_mark("There are two squares.", "There are three squares.") == "✗ (정답: 'There are three squares.')"
    assert answer_mark("a photo of a square", ["a photo of a red square", "a photo of a square"]) == "✓"
    assert answer_mark("blue", ("red", "green")) == "✗ (정답: 'red' | 'green')"
    assert answer_mark("anything", None) == ""  # no key (hub profile): no mark
    with pytest.raises(ValueError, match="key is empty"):
        answer_mark("two", [])
