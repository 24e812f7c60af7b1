"""The reference solution's extras beyond the learner contract (always tests ``solutions/``, no points):
batching, exact top-k, the FAISS backend, atomic saving and its error messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vlm_course import shapesworld as sw
from vlm_course.submission import import_file

SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"


@pytest.fixture(scope="module")
def ref():
    return import_file(SOLUTIONS / "image_search.py")


@pytest.fixture(scope="module")
def images():
    return [s.render() for s in sw.sample_scenes(12, seed=77)]


@pytest.fixture(scope="module")
def search(ref, clip_model_name, images):
    s = ref.CLIPImageSearch(clip_model_name, verbose=False)
    s.index_images(images, progress=False)
    return s


def test_top_k_is_exact_and_orders_ties_by_index(ref):
    rng = np.random.default_rng(0)
    vectors = rng.integers(-3, 4, size=(500, 8)).astype(np.float32)  # many equal scores
    query = rng.integers(-3, 4, size=8).astype(np.float32)
    scores = vectors @ query
    full = np.lexsort((np.arange(500), -scores))  # score descending, then index ascending
    for k in (1, 7, 100, 500, 900):
        idx, got = ref.top_k(vectors, query, k)
        assert idx.tolist() == full[: min(k, 500)].tolist()
        assert np.array_equal(got, scores[idx])


def test_batch_size_does_not_change_embeddings(ref, clip_model_name, images, search):
    one_by_one = ref.CLIPImageSearch(clip_model_name, verbose=False, batch_size=1)
    assert one_by_one.index_images(images, progress=False) == len(images)
    assert np.allclose(one_by_one.index.vectors, search.index.vectors, atol=1e-5)
    assert one_by_one.index.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(search.index.vectors, axis=1), 1.0, atol=1e-5)


def test_faiss_backend_gives_the_same_results(ref, clip_model_name, images, search):
    pytest.importorskip("faiss")
    flat = ref.CLIPImageSearch(clip_model_name, verbose=False, backend="faiss")
    flat.index_images(images, progress=False)
    for query in ("a photo of a red circle", "a photo of a blue triangle"):
        want, got = search.search(query, top_k=8), flat.search(query, top_k=8)
        assert [r["index"] for r in got] == [r["index"] for r in want]
        assert np.allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-5)
    assert len(flat.search("a photo of a red circle", top_k=50)) == len(images)


def test_embedding_index_grows_and_checks_sizes(ref):
    index = ref.EmbeddingIndex(4)
    for _ in range(5):
        index.add(np.ones((30, 4)))
    assert len(index) == 150 and np.allclose(index.vectors, 0.5)
    with pytest.raises(ValueError, match="size 3"):
        index.add(np.ones((1, 3)))
    with pytest.raises(ValueError, match="unknown backend"):
        ref.EmbeddingIndex(4, backend="annoy")


def test_mixed_inputs_and_bad_types(ref, clip_model_name, images, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    images[0].save(folder / "b.png")
    images[1].save(folder / "a.jpg")
    s = ref.CLIPImageSearch(clip_model_name, verbose=False)
    assert s.index_images([images[2], folder], progress=False) == 3
    assert s.paths == [None, str(folder / "a.jpg"), str(folder / "b.png")]
    assert s.index_images(folder / "a.jpg", progress=False) == 1  # one file path
    with pytest.raises(TypeError, match="cannot index a int"):
        s.index_images([images[0], 42], progress=False)
    assert len(s) == 4, "a bad input is refused before anything is indexed"
    with pytest.raises(TypeError, match="search_by_image"):
        s.search(images[0])


def test_skipped_images_are_listed(ref, clip_model_name, images, tmp_path):
    s = ref.CLIPImageSearch(clip_model_name, verbose=False)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) \(indexed 1\)"):
        assert s.index_images([tmp_path / "nope.png", images[0]], progress=False) == 1
    assert [src for src, _ in s.skipped] == [str(tmp_path / "nope.png")]


def test_save_is_atomic(search, tmp_path, monkeypatch):
    target = tmp_path / "index.npz"
    search.save(target)
    good = target.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"half an index")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        search.save(target)
    assert target.read_bytes() == good, "a failed save must leave the previous index untouched"
    assert os.listdir(tmp_path) == ["index.npz"], "no temporary file may be left behind"


def test_load_errors_say_what_is_wrong(ref, clip_model_name, search, tmp_path):
    fresh = ref.CLIPImageSearch(clip_model_name, verbose=False)
    with pytest.raises(FileNotFoundError, match="no saved index"):
        fresh.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="not an index written by CLIPImageSearch.save"):
        fresh.load(junk)
    search.save(tmp_path / "index.npz")
    other_name = ref.CLIPImageSearch("openai/clip-vit-large-patch14", verbose=False)  # same toy weights
    with pytest.raises(ValueError, match="clip-vit-base-patch32.*cannot be compared"):
        other_name.load(tmp_path / "index.npz")
    with pytest.raises(ValueError, match="is empty"):
        fresh.search("a photo of a red circle")
