"""Named lesson examples: deterministic toy scenes, valid spec labels/questions, hub branch without network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm_course import examples, images, profiles
from vlm_course import shapesworld as sw
from vlm_course.examples import Example, get_example, list_examples, toy_gallery

SPEC_LABELS = set(sw.zero_shot_labels("color_shape") + sw.zero_shot_labels("shape") + sw.zero_shot_labels("color"))


@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt to reach the network fails the test."""

    def fail(*args, **kwargs):
        raise AssertionError("the toy profile must not touch the network")

    monkeypatch.setattr(profiles, "hub_reachable", fail)
    monkeypatch.setattr(examples, "hub_reachable", fail)
    monkeypatch.setattr(images, "load_image", fail)


@pytest.fixture
def fake_photo(monkeypatch, tmp_path):
    """load_image replaced by a stub that records its calls and returns a fixed RGB image."""
    monkeypatch.setenv(examples.CACHE_ENV, str(tmp_path))
    calls: list[tuple[str, float, object]] = []
    photo = Image.new("RGB", (640, 480), (200, 120, 40))

    def load_image(source, *, timeout=10.0, max_pixels=None, cache_dir=None):
        calls.append((source, timeout, cache_dir))
        return photo

    monkeypatch.setattr(images, "load_image", load_image)
    return calls, photo


def test_names_and_unknown_name():
    names = list_examples()
    assert "two cats on a couch" in names and "a bedroom" in names and len(names) >= 4
    with pytest.raises(KeyError) as info:
        get_example("a unicorn", "toy")
    message = str(info.value)
    assert "a unicorn" in message and all(repr(n) in message for n in names)


@pytest.mark.parametrize("name", list_examples())
def test_toy_examples_are_valid_and_deterministic(name, no_hub):
    ex = get_example(name, "toy")
    again = get_example(name.upper() + "  ", "toy")  # names are case- and space-insensitive
    assert isinstance(ex, Example) and ex.profile == "toy" and ex.name == name
    assert ex.image.mode == "RGB" and ex.image.size == (224, 224)
    assert np.array_equal(np.asarray(ex.image), np.asarray(again.image))
    assert ex.scene == again.scene and ex.scene.render().tobytes() == ex.image.tobytes()
    assert set(ex.labels) <= SPEC_LABELS and len(ex.labels) >= 2
    assert ex.true_labels and set(ex.true_labels) < set(ex.labels)  # at least one right and one wrong label
    assert ex.answers == [sw.answer(ex.scene, q) for q in ex.questions]
    for q in ex.questions:
        assert sw.answer_kind(q) in sw.ANSWER_SETS  # a spec question the toy models know
    assert ex.scene.caption in ex.description and ex.caption == ex.scene.caption


def test_toy_stand_ins_play_their_part(no_hub):
    cats = get_example("two cats on a couch", "toy")
    assert len(cats.scene.objects) == 2 and len({(o.shape, o.color) for o in cats.scene.objects}) == 1
    assert dict(zip(cats.questions, cats.answers, strict=True))["How many circles are there?"] == "two"
    assert cats.true_labels == ["a photo of a green circle"]
    bear = get_example("a bear", "toy")
    assert len(bear.scene.objects) == 1 and bear.true_labels == [sw.true_label(bear.scene)]
    bedroom = get_example("a bedroom", "toy")
    assert len(bedroom.true_labels) == 2  # two labels true at once: the sigmoid lesson
    assert bedroom.scene.caption != cats.scene.caption  # a different scene for two-image comparison


def test_profile_from_environment(no_hub, monkeypatch):
    monkeypatch.setenv(profiles.PROFILE_ENV, "toy")
    assert get_example("a bear").profile == "toy"
    with pytest.raises(profiles.ProfileError):
        get_example("a bear", "cloud")


def test_hub_branch_uses_load_image_with_cache(fake_photo, tmp_path):
    calls, photo = fake_photo
    ex = get_example("two cats on a couch", "hub", timeout=3.0)
    assert calls == [("http://images.cocodataset.org/val2017/000000039769.jpg", 3.0, tmp_path / "images")]
    assert ex.profile == "hub" and ex.image is photo and ex.source == calls[0][0]
    assert ex.labels == ["a photo of a cat", "a photo of a dog", "a photo of a bird"]
    assert ex.true_labels == ["a photo of a cat"]
    assert "How many cats are there?" in ex.questions
    assert ex.scene is None and ex.answers is None and ex.caption is None


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(examples.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert examples.image_cache_dir() == tmp_path / ".cache" / "vlm_course" / "images"


def test_hub_profile_raises_when_the_photo_cannot_load(monkeypatch):
    def offline(source, **kwargs):
        raise images.ImageLoadError(f"{source}: cannot connect")

    monkeypatch.setattr(images, "load_image", offline)
    with pytest.raises(images.ImageLoadError, match="cannot connect"):
        get_example("a bear", "hub")


def test_auto_profile(fake_photo, monkeypatch, capsys):
    calls, _ = fake_photo
    monkeypatch.setattr(examples, "_is_cached", lambda url: False)
    monkeypatch.setattr(examples, "hub_reachable", lambda: False)
    assert get_example("a bear", "auto").profile == "toy"  # offline and not cached: toy
    assert calls == []
    monkeypatch.setattr(examples, "_is_cached", lambda url: True)
    assert get_example("a bear", "auto").profile == "hub"  # offline but cached: the photo
    monkeypatch.setattr(examples, "_is_cached", lambda url: False)
    monkeypatch.setattr(examples, "hub_reachable", lambda: True)
    assert get_example("a bear", "auto").profile == "hub"

    def broken(source, **kwargs):
        raise images.ImageLoadError(f"{source}: HTTP 404")

    monkeypatch.setattr(images, "load_image", broken)
    ex = get_example("a bear", "auto")  # online but the photo is gone: fall back, say so
    assert ex.profile == "toy"
    assert "using its toy stand-in" in capsys.readouterr().out


def test_toy_gallery():
    gallery = toy_gallery(5, seed=7)
    assert len(gallery) == 5
    assert [s for s, _ in gallery] == sw.sample_scenes(5, 7)
    assert all(img.size == (224, 224) and img.tobytes() == s.render().tobytes() for s, img in gallery)
    assert [s for s, _ in toy_gallery(3, seed=7, n_objects=1)] == sw.sample_scenes(3, 7, n_objects=1)
    assert toy_gallery(0) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        toy_gallery(-1)


def test_auto_uses_a_cached_photo_offline(monkeypatch, tmp_path):
    """A photo downloaded once (kept by load_image's cache) is used offline, with the real loader."""
    cache_path = getattr(images, "cache_path", None) or getattr(images, "_cache_path", None)
    if cache_path is None:
        pytest.skip("vlm_course.images exposes no cache path function")
    monkeypatch.setenv(examples.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(examples, "hub_reachable", lambda: False)
    url = "http://images.cocodataset.org/val2017/000000000632.jpg"
    target = Path(cache_path(url, examples.image_cache_dir()))
    target.parent.mkdir(parents=True)
    Image.new("RGB", (64, 48), (10, 200, 30)).save(target, format="JPEG")
    ex = get_example("a bedroom", "auto")
    assert ex.profile == "hub" and ex.source == url and ex.image.size == (64, 48)
    assert get_example("a bear", "auto").profile == "toy"  # not cached, offline


def test_none_fit_labels_describe_nothing_in_the_scene():
    from vlm_course.examples import _NONE_FIT, get_example, list_examples, true_toy_labels

    assert set(_NONE_FIT) == set(list_examples())
    for name in list_examples():
        ex = get_example(name, "toy")
        assert len(ex.none_fit_labels) == 3 == len(set(ex.none_fit_labels))
        assert not true_toy_labels(ex.scene, ex.none_fit_labels)
        assert set(ex.none_fit_labels) <= set(sw.zero_shot_labels())


# --- photo_example: your own picture, or the bundled photo-like one ---------------------------------


def test_bundled_photo_is_the_rendered_scene():
    """The shipped JPEG is render_photo(sample_photo_scene()) (within JPEG error): rebuild it with
    `python -m vlm_course.examples` after changing the renderer."""
    from vlm_course.examples import render_photo, sample_photo_path, sample_photo_scene

    path = sample_photo_path()
    assert path.is_file() and path.stat().st_size < 40_000
    shipped = images.load_image(path)
    assert shipped.size == (640, 480)
    rendered = np.asarray(render_photo(sample_photo_scene()), dtype=np.int16)
    assert np.abs(np.asarray(shipped, dtype=np.int16) - rendered).mean() < 3


def test_photo_example_default_is_the_bundled_photo_with_its_key():
    from vlm_course.examples import photo_example, sample_photo_scene, true_toy_labels

    ex = photo_example()
    scene = sample_photo_scene()
    assert ex.profile == "photo" and ex.scene == scene and ex.caption == scene.caption
    assert ex.image.size == (640, 480) and ex.image.mode == "RGB"
    assert ex.answers == [sw.answer(scene, q) for q in ex.questions]
    assert ex.true_labels == true_toy_labels(scene, ex.labels) and 0 < len(ex.true_labels) < len(ex.labels)
    assert photo_example("  ").scene == scene  # an empty source is the default too


def test_photo_example_of_a_file(tmp_path):
    from vlm_course.examples import photo_example

    picture = tmp_path / "mine.png"
    Image.new("RGBA", (30, 20), (10, 20, 30, 255)).save(picture)
    ex = photo_example(str(picture), labels=["a photo of a cat"], questions=["What is this?"])
    assert ex.profile == "photo" and ex.scene is None and ex.answers is None
    assert ex.image.size == (30, 20) and ex.image.mode == "RGB"
    assert ex.labels == ["a photo of a cat"] and ex.questions == ["What is this?"] and ex.source == str(picture)
    assert photo_example(picture).questions == ["What is shown in this image?"]


def test_photo_example_of_a_url_uses_the_image_cache(fake_photo, tmp_path):
    from vlm_course.examples import photo_example

    calls, photo = fake_photo
    url = "https://example.org/my-cat.jpg"
    ex = photo_example(url, timeout=3.0)
    assert ex.image is photo and ex.source == url
    assert calls == [(url, 3.0, examples.image_cache_dir())]


def test_photo_example_errors_say_what_to_do(tmp_path):
    from vlm_course.examples import photo_example

    with pytest.raises(images.ImageNotFoundError) as info:
        photo_example(tmp_path / "missing.jpg")
    assert "no such file" in str(info.value) and "leave the source out (None)" in str(info.value)
    (tmp_path / "page.jpg").write_text("<html>not a picture</html>")
    with pytest.raises(images.ImageDecodeError, match="bundled with the course"):
        photo_example(tmp_path / "page.jpg")
