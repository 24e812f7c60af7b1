"""The quality bars (vlm_course/toybuild/bars.py) against the shipped model cards, and how
``eval-toy-models`` reports them."""

from __future__ import annotations

import pytest

from vlm_course import shapesworld as sw
from vlm_course import toy
from vlm_course.toybuild import bars, card, commands

# Bars the shipped checkpoints do not meet yet, with the model card's figure (200 fresh scenes).
# Strict: when a rebuilt checkpoint's card meets one, its test turns red until it leaves this list.
KNOWN_UNMET: dict[tuple[str, str, str], str] = {
    ("llava", "describe_exact", "course"): "83.5%",
    ("llava", "describe_exact", "alt"): "76.0%",
    ("llava", "describe_exact_heldout_phrasings", "course"): "70.5%",
    ("llava", "describe_exact_heldout_phrasings", "alt"): "63.5%",
}


def _cases():
    for b in bars.BARS:
        for sampler in sw.SAMPLERS:
            key = (b.model, b.metric, sampler)
            marks = [pytest.mark.xfail(strict=True, reason=KNOWN_UNMET[key])] if key in KNOWN_UNMET else []
            yield pytest.param(b, sampler, marks=marks, id=f"{b.model}-{b.metric}-{sampler}")


@pytest.mark.parametrize(("bar", "sampler"), list(_cases()))
def test_every_model_card_meets_its_bars_on_every_sampler(bar, sampler):
    scores = bars.card_scores(toy.model_path(bar.model))
    row = next(r for r in bars.report(bar.model, scores) if r["metric"] == bar.metric and r["sampler"] == sampler)
    assert row["score"] is not None, f"the {bar.model} card has no {bar.metric!r} figure for the {sampler} sampler"
    assert row["met"], f"{bar.model} {bar.task} ({sampler} sampler): {row['score']:.1%} < {bar.bar:.0%}"


def test_known_unmet_names_real_bars():
    names = {(b.model, b.metric, s) for b in bars.BARS for s in sw.SAMPLERS}
    assert set(KNOWN_UNMET) <= names


def test_every_toy_has_a_bar_and_unknown_bars_say_where_they_live():
    assert {b.model for b in bars.BARS} == set(toy.TOY_NAMES)
    assert bars.bar("llava", "describe_exact") == 0.85
    with pytest.raises(KeyError, match="toybuild/bars.py"):
        bars.bar("llava", "poetry")


def test_report_and_card_update_round_trip(tmp_path, capsys):
    (tmp_path / "README.md").write_text("# card\n\n## Measured scores (fresh scenes)\n| metric | score |\n|---|---|\n"
                                        "| old | 1.0% |\n\nRebuild with ...\n")
    scores = {"describe_exact": 0.9, "answer_word": 0.95, "describe_exact (alt sampler)": 0.8,
              "answer_word (alt sampler)": 0.91, "describe_exact_heldout_phrasings": 0.85}
    card.update_scores(tmp_path, scores)
    assert bars.card_scores(tmp_path) == pytest.approx(scores)
    assert (tmp_path / "README.md").read_text().endswith("\n\nRebuild with ...\n")
    unmet = commands.print_report({"llava": scores})
    out = capsys.readouterr().out
    assert "describe_exact" in out and "90.0%" in out and "80.0%" in out
    # describe on alt (80% < 85%) and held-out phrasings on alt (not measured) are not met.
    assert unmet == 2 and "2 bar(s) not met" in out
    with pytest.raises(ValueError, match="rebuild the checkpoint"):
        (tmp_path / "README.md").write_text("no table")
        card.update_scores(tmp_path, scores)
