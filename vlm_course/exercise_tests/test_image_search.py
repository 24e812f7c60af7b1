"""Exercise 1 (CLIP image search): gradeable behaviour checks.

Runs against ``solutions/image_search.py`` by default; ``--submission exercises`` (or
``VLM_COURSE_SUBMISSION``) tests a learner's file instead. The submission is reached only
through the ``image_search_cls`` fixture. Galleries are ShapesWorld scenes; the model is the
toy CLIP under the toy profile.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings

import numpy as np
import pytest
import torch

from vlm_course import shapesworld as sw
from vlm_course.profiles import resolve

PER_LABEL = 5  # gallery: 5 single-object scenes of each of the 12 "a photo of a {colour} {shape}" labels
GALLERY_SEED = 8080
LABELS = sw.zero_shot_labels()
SCORE_TOL = 2e-3  # cosine similarities may differ this much (float32 vs half precision on a GPU)


def _gallery_scenes() -> list[sw.Scene]:
    counts = dict.fromkeys(LABELS, 0)
    scenes = []
    for scene in sw.iter_scenes(seed=GALLERY_SEED, n_objects=1):
        label = sw.true_label(scene)
        if counts[label] < PER_LABEL:
            counts[label] += 1
            scenes.append(scene)
            if len(scenes) == PER_LABEL * len(LABELS):
                return scenes
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def scenes() -> list[sw.Scene]:
    return _gallery_scenes()


@pytest.fixture(scope="module")
def gallery(scenes):
    return [s.render() for s in scenes]


@pytest.fixture(scope="module")
def gallery_labels(scenes) -> list[str]:
    return [sw.true_label(s) for s in scenes]


class Lazy:
    """Build a value on first ``get()``; a failure is raised again in every test that asks for it,
    so an unfinished submission fails each test with its own readable message."""

    def __init__(self, build) -> None:
        self._build = build
        self._value = None
        self._error: BaseException | None = None
        self._done = False

    def get(self):
        if not self._done:
            try:
                self._value = self._build()
            except Exception as exc:  # noqa: BLE001 - re-raised below
                self._error = exc
            self._done = True
        if self._error is not None:
            raise self._error
        return self._value


@pytest.fixture(scope="module")
def indexed(image_search_cls, clip_model_name, gallery) -> Lazy:
    """The whole gallery indexed once, shared by the read-only tests."""

    def build():
        search = image_search_cls(clip_model_name)
        added = search.index_images(list(gallery))
        assert added == len(gallery), f"index_images should return the number of images added ({len(gallery)}), got {added!r}"
        return search

    return Lazy(build)


@pytest.fixture(scope="module")
def oracle(clip_model_name, gallery):
    """Expected cosine similarities, computed here straight from CLIP."""
    from transformers import CLIPModel, CLIPProcessor

    source = resolve(clip_model_name, verbose=False)
    model = CLIPModel.from_pretrained(source).eval()
    processor = CLIPProcessor.from_pretrained(source)
    with torch.inference_mode():
        images = model.get_image_features(**processor(images=gallery, return_tensors="pt")).pooler_output
        images = torch.nn.functional.normalize(images, dim=-1)

    def scores(text: str) -> np.ndarray:
        with torch.inference_mode():
            vec = model.get_text_features(**processor(text=[text], padding=True, return_tensors="pt")).pooler_output
            return (images @ torch.nn.functional.normalize(vec, dim=-1)[0]).numpy()

    return scores


def _check_results(results, n_expected: int, n_index: int) -> None:
    assert isinstance(results, list), f"search must return a list, got {type(results).__name__}"
    assert len(results) == n_expected, f"expected {n_expected} results, got {len(results)}"
    for r in results:
        assert isinstance(r, dict), f"each result must be a dict with 'index', 'path' and 'score', got {r!r}"
        missing = {"index", "path", "score"} - set(r)
        assert not missing, f"result {r!r} lacks the key(s) {sorted(missing)}"
        assert isinstance(r["index"], int) and not isinstance(r["index"], bool), (
            f"'index' must be a Python int, got {type(r['index']).__name__}: use int(i)"
        )
        assert 0 <= r["index"] < n_index, f"index {r['index']} is outside the index (0..{n_index - 1})"
        assert isinstance(r["score"], float), f"'score' must be a Python float, got {type(r['score']).__name__}: use float(s)"
        assert -1.0 - 1e-3 <= r["score"] <= 1.0 + 1e-3, f"a cosine similarity lies in [-1, 1], got {r['score']}"
    scores = [r["score"] for r in results]
    assert all(a >= b for a, b in itertools.pairwise(scores)), f"results must come best first; scores {scores}"
    indices = [r["index"] for r in results]
    assert len(set(indices)) == len(indices), f"an image appears twice in the results: {indices}"


def _indices(results) -> list[int]:
    return [r["index"] for r in results]


def _write_pngs(images, folder, stem="img") -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        path = folder / f"{stem}_{i:02d}.png"
        im.save(path)
        paths.append(path)
    return paths


# ---- the core: index_images and search ----------------------------------------------------------


@pytest.mark.points(2, hint="search는 {'index', 'path', 'score'} dict의 목록을 점수 높은 순서로 돌려줘야 합니다")
def test_search_returns_ranked_result_dicts(indexed, gallery):
    search = indexed.get()
    results = search.search("a photo of a blue square")
    _check_results(results, 5, len(gallery))
    assert all(r["path"] is None for r in results), "images indexed as PIL images have path None"


@pytest.mark.points(3, hint="점수는 L2 정규화한 CLIP 임베딩끼리의 내적(코사인 유사도)이어야 합니다")
def test_scores_are_clip_cosine_similarities(indexed, oracle, gallery):
    search = indexed.get()
    for query in ("a photo of a green triangle", "a photo of a yellow circle"):
        expected = oracle(query)
        results = search.search(query, top_k=len(gallery))
        _check_results(results, len(gallery), len(gallery))
        got = np.array([r["score"] for r in results])
        want = expected[_indices(results)]
        assert np.allclose(got, want, atol=SCORE_TOL), (
            f"scores must be cosine similarities of L2-normalised CLIP embeddings; for {query!r} the first "
            f"scores are {got[:3].round(4).tolist()}, expected {want[:3].round(4).tolist()}"
        )
        assert np.allclose(got, np.sort(expected)[::-1], atol=SCORE_TOL), f"{query!r}: not the best images first"


@pytest.mark.points(3, hint="문장에 맞는 이미지가 위로 와야 합니다: 텍스트는 get_text_features, 이미지는 get_image_features로 임베딩하세요")
def test_text_query_finds_matching_images(indexed, gallery_labels):
    search = indexed.get()
    red = search.search("a photo of a red circle", top_k=5)
    hits = [gallery_labels[i] for i in _indices(red)]
    assert sum(h == "a photo of a red circle" for h in hits) / 5 >= 0.8, f"top 5 for a red circle: {hits}"
    precision = []
    for label in LABELS:
        found = [gallery_labels[i] for i in _indices(search.search(label, top_k=PER_LABEL))]
        precision.append(sum(f == label for f in found) / PER_LABEL)
    assert np.mean(precision) >= 0.8, f"mean precision@5 over the 12 labels is {np.mean(precision):.2f}: {precision}"


@pytest.mark.points(2, hint="top_k개만 돌려주고(기본 5), 인덱스보다 크면 모든 이미지를 한 번씩 돌려주세요")
def test_top_k_semantics(indexed, gallery):
    search = indexed.get()
    n = len(gallery)
    query = "a photo of a green square"
    assert len(search.search(query)) == 5, "top_k defaults to 5"
    one = search.search(query, top_k=1)
    _check_results(one, 1, n)
    ten = search.search(query, top_k=10)
    _check_results(ten, 10, n)
    assert _indices(search.search(query, top_k=3)) == _indices(ten)[:3], "top 3 must be the first 3 of the top 10"
    assert _indices(one) == _indices(ten)[:1]
    everything = search.search(query, top_k=n + 7)
    _check_results(everything, n, n)
    assert sorted(_indices(everything)) == list(range(n)), "top_k above the index size returns every image once"


@pytest.mark.points(1, hint="top_k가 1보다 작으면 ValueError를 내세요")
@pytest.mark.parametrize("top_k", [0, -3])
def test_rejects_top_k_below_one(indexed, top_k):
    search = indexed.get()
    with pytest.raises(ValueError):
        search.search("a photo of a red circle", top_k=top_k)


@pytest.mark.points(1, hint="빈 문자열이나 공백뿐인 query는 ValueError로 거절하세요")
@pytest.mark.parametrize("query", ["", "   "])
def test_rejects_an_empty_query(indexed, query):
    search = indexed.get()
    with pytest.raises(ValueError):
        search.search(query)


@pytest.mark.points(1, hint="아직 아무것도 인덱싱하지 않았을 때 search는 ValueError를 내야 합니다")
def test_rejects_search_on_an_empty_index(image_search_cls, clip_model_name):
    search = image_search_cls(clip_model_name)
    with pytest.raises(ValueError):
        search.search("a photo of a red circle")


@pytest.mark.points(2, hint="index_images를 다시 부르면 기존 인덱스 뒤에 이어 붙이세요(앞 이미지의 번호는 그대로)")
def test_indexing_appends(image_search_cls, clip_model_name, indexed, gallery):
    whole = indexed.get()
    half = len(gallery) // 2
    search = image_search_cls(clip_model_name)
    assert search.index_images(gallery[:half]) == half
    assert search.index_images(gallery[half:]) == len(gallery) - half
    for query in ("a photo of a red triangle", "a photo of a blue circle"):
        got = search.search(query, top_k=len(gallery))
        _check_results(got, len(gallery), len(gallery))
        want = whole.search(query, top_k=len(gallery))
        assert _indices(got[:10]) == _indices(want[:10]), "a second index_images call must append, keeping earlier indices"
        assert np.allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-4)


@pytest.mark.points(2, hint="str·Path 경로와 폴더도 받으세요(폴더는 vlm_course.images.scan_folder 순서); path에는 str(경로)를 넣습니다")
def test_indexes_paths_and_folders(image_search_cls, clip_model_name, gallery, tmp_path):
    images = gallery[:: PER_LABEL * 2][:6]
    paths = _write_pngs(images, tmp_path / "photos")
    search = image_search_cls(clip_model_name)
    assert search.index_images([str(p) for p in paths[:3]]) == 3  # str paths
    assert search.index_images(paths[3:]) == 3  # pathlib.Path objects
    results = search.search("a photo of a red circle", top_k=10)
    _check_results(results, 6, 6)
    assert {r["index"]: r["path"] for r in results} == {i: str(p) for i, p in enumerate(paths)}

    from_folder = image_search_cls(clip_model_name)
    assert from_folder.index_images(tmp_path / "photos") == 6, "a folder path indexes every image inside it"
    by_folder = from_folder.search("a photo of a red circle", top_k=10)
    assert {r["index"]: r["path"] for r in by_folder} == {i: str(p) for i, p in enumerate(sorted(paths))}
    assert np.allclose([r["score"] for r in by_folder], [r["score"] for r in results], atol=1e-4)


@pytest.mark.points(1, hint="읽을 수 없는 파일은 건너뛰고, 파일 이름을 넣어 warnings.warn으로 알리세요")
def test_skips_unreadable_images_with_a_warning(image_search_cls, clip_model_name, gallery, tmp_path):
    good = _write_pngs(gallery[:3], tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not really an image")
    missing = tmp_path / "missing.png"
    search = image_search_cls(clip_model_name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        added = search.index_images([good[0], missing, good[1], broken, good[2]])
    assert added == 3, f"the 3 readable images are indexed and the 2 unreadable ones skipped; got {added!r}"
    said = " ".join(str(w.message) for w in caught)
    for bad in (missing, broken):
        assert bad.name in said, f"a warning must name the skipped file {bad.name}; warnings: {said!r}"
    results = search.search("a photo of a red circle", top_k=10)
    _check_results(results, 3, 3)
    assert {r["index"]: r["path"] for r in results} == {i: str(p) for i, p in enumerate(good)}


# ---- bonus: image-to-image search and persistence -----------------------------------------------


@pytest.mark.points(1, hint="(도전) search_by_image: 질의 이미지를 get_image_features로 임베딩해 search와 같은 방식으로 찾으세요")
def test_search_by_image(indexed, gallery, gallery_labels):
    search = indexed.get()
    for i in (0, 17, 42):
        results = search.search_by_image(gallery[i], top_k=PER_LABEL)
        _check_results(results, PER_LABEL, len(gallery))
        assert results[0]["score"] > 0.999, "an indexed image is its own best match (cosine similarity 1)"
        assert i in _indices(results)[:3] and math.isclose(
            next(r["score"] for r in results if r["index"] == i), 1.0, abs_tol=1e-3
        ), f"image {i} must find itself with score ~1"
        same = sum(gallery_labels[r["index"]] == gallery_labels[i] for r in results)
        assert same >= 3, f"image-to-image search for {gallery_labels[i]!r} found only {same} of its kind"


@pytest.mark.points(2, hint="(도전) save는 path에 파일 하나만 쓰고(임시 파일 + os.replace), load는 그대로 되살려 개수를 돌려줍니다")
def test_save_and_load_round_trip(image_search_cls, clip_model_name, gallery, tmp_path):
    paths = _write_pngs(gallery[:4], tmp_path / "photos")
    search = image_search_cls(clip_model_name)
    search.index_images(paths)
    search.index_images(gallery[4:12])
    target = tmp_path / "saved" / "index.npz"
    target.parent.mkdir()
    search.save(target)
    assert os.listdir(target.parent) == ["index.npz"], f"save must write exactly {target.name} (found {os.listdir(target.parent)})"

    restored = image_search_cls(clip_model_name)
    assert restored.load(target) == 12, "load returns how many images the saved index holds"
    for query in ("a photo of a red circle", "a photo of a yellow triangle"):
        want = search.search(query, top_k=12)
        got = restored.search(query, top_k=12)
        _check_results(got, 12, 12)
        assert [(r["index"], r["path"]) for r in got] == [(r["index"], r["path"]) for r in want]
        assert np.allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-6)


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory, clip_model_name) -> str:
    """A differently sized, randomly initialised CLIP: another model's embeddings."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    source = resolve(clip_model_name, verbose=False)
    config = CLIPConfig.from_pretrained(source)
    config.projection_dim += 16
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("other_clip")
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor.from_pretrained(source).save_pretrained(folder)
    return str(folder)


@pytest.mark.points(1, hint="(도전) 다른 모델(이름이나 임베딩 크기가 다름)의 인덱스는 load가 ValueError로 거절해야 합니다")
def test_load_refuses_another_models_index(image_search_cls, clip_model_name, other_clip, gallery, tmp_path):
    search = image_search_cls(clip_model_name)
    search.index_images(gallery[:4])
    search.save(tmp_path / "index.npz")
    with pytest.raises(ValueError):
        image_search_cls(other_clip).load(tmp_path / "index.npz")
