"""Reference solution of exercise 1: CLIP image search.

Same interface as ``exercises/image_search.py``, plus batched indexing with a progress bar,
folders, image-to-image search, atomic save/load that refuses another model's index, and an
optional FAISS backend. Ranking is an exact inner-product top-k: one matrix-vector product over
the L2-normalised float32 embeddings and ``np.argpartition``, so a query costs one pass over
the embeddings (the memory-bandwidth floor) and nothing is sorted but the k winners.
"""

from __future__ import annotations

import json
import numbers
import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
BACKENDS = ("numpy", "faiss")
INDEX_FORMAT = "vlm-course-image-search/1"

# An image to index or to query with: a PIL image, or the path of an image file.
ImageInput = Image.Image | str | os.PathLike


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` as C-contiguous float32 rows of unit L2 norm (zero rows stay zero)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    return vectors / norms


def top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``vectors`` by inner product with ``query``: (indices, scores), best first.

    One matrix-vector product, then ``argpartition`` (linear time) and a sort of the k winners
    only. Equal scores are ordered by index, also across the cutoff (the lower index wins), so the
    result is deterministic. ``k`` above the number of rows returns every row.
    """
    scores = vectors @ query
    n = scores.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if k < n:
        idx = np.argpartition(scores, n - k)[n - k :]
        cutoff = scores[idx].min()
        tied = np.flatnonzero(scores == cutoff)
        if len(tied) > np.count_nonzero(scores[idx] == cutoff):  # ties straddle the cutoff: lowest indices win
            above = idx[scores[idx] > cutoff]
            idx = np.concatenate([above, tied[: k - len(above)]])
    else:
        idx = np.arange(n)
    best = scores[idx]
    order = np.lexsort((idx, -best))
    return idx[order], best[order]


class EmbeddingIndex:
    """A growable store of unit-norm float32 vectors with exact top-k inner-product search.

    Appends are amortised O(1) (the buffer doubles). ``backend="faiss"`` keeps an
    ``IndexFlatIP`` next to the array; it gives the same ranking.
    """

    def __init__(self, dim: int, backend: str = "numpy") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.dim = int(dim)
        self.backend = backend
        self._buffer = np.empty((0, self.dim), dtype=np.float32)
        self._size = 0
        self._faiss = _new_faiss_index(self.dim) if backend == "faiss" else None

    def __len__(self) -> int:
        return self._size

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors (a read-only view, one row per item, in insertion order)."""
        view = self._buffer[: self._size]
        view.flags.writeable = False
        return view

    def add(self, vectors: np.ndarray, *, normalized: bool = False) -> None:
        """Append rows, normalised to unit length here unless ``normalized`` says they already are."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32) if normalized else normalize_rows(vectors)
        if vectors.ndim != 2:
            raise ValueError(f"expected a 2-d array of vectors, got shape {vectors.shape}")
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have size {vectors.shape[1]}, this index holds size {self.dim}")
        need = self._size + len(vectors)
        if need > len(self._buffer):
            grown = np.empty((max(need, 2 * len(self._buffer), 64), self.dim), dtype=np.float32)
            grown[: self._size] = self._buffer[: self._size]
            self._buffer = grown
        self._buffer[self._size : need] = vectors
        self._size = need
        if self._faiss is not None:
            self._faiss.add(vectors)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows for one ``query`` vector: (indices, scores), best first."""
        query = normalize_rows(query)[0]
        if self._faiss is not None:
            k = min(int(k), self._size)
            scores, idx = self._faiss.search(query[None, :], k)
            return idx[0].astype(np.int64), scores[0]
        return top_k(self._buffer[: self._size], query, k)


def _new_faiss_index(dim: int):
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("backend='faiss' needs FAISS: pip install faiss-cpu (or use backend='numpy')") from exc
    return faiss.IndexFlatIP(dim)


def _check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    return int(top_k)


class CLIPImageSearch:
    """Search a gallery of images with free text (or an image), using CLIP embeddings.

    Results are lists of dicts, best first: ``{"index": int, "path": str | None, "score": float}``;
    ``index`` counts indexed images in order over all ``index_images`` calls, ``path`` is the file
    the image came from (``None`` for PIL images), ``score`` is the cosine similarity.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        *,
        batch_size: int = 32,
        backend: str = "numpy",
        device: str | None = None,
        verbose: bool = True,
    ) -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        from vlm_course.device import pick_device, pick_dtype

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        from vlm_course.profiles import resolve_model

        # A course model loads as its load plan says, unless a device is named; other names load as given.
        res = resolve_model(model_name, verbose=verbose)
        source, self.profile = res.target, res.profile
        self.model_name = model_name
        self.batch_size = batch_size
        if res.plan is not None and device is None:
            self.model = CLIPModel.from_pretrained(source, **res.plan.model_kwargs).eval()
            self.device = self.model.device
        else:
            self.device = pick_device(device)
            self.model = CLIPModel.from_pretrained(source, dtype=pick_dtype(self.device)).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(source)
        self.embedding_size: int = int(self.model.config.projection_dim)
        self.index = EmbeddingIndex(self.embedding_size, backend)
        self.paths: list[str | None] = []
        self.skipped: list[tuple[str, str]] = []  # (source, reason) of every input that could not be read
        self._torch = torch

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"CLIPImageSearch({self.model_name!r}, profile={self.profile!r}, images={len(self)})"

    # ---- embedding -----------------------------------------------------------------------------

    def _features(self, out) -> np.ndarray:
        feats = out if isinstance(out, self._torch.Tensor) else out.pooler_output
        feats = self._torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy().astype(np.float32, copy=False)

    def _pixels(self, images: Sequence[Image.Image]):
        return self.processor(images=[_rgb(im) for im in images], return_tensors="pt")["pixel_values"]

    def _embed_pixels(self, pixel_values) -> np.ndarray:
        with self._torch.inference_mode():
            pixel_values = pixel_values.to(self.device, self.model.dtype)
            return self._features(self.model.get_image_features(pixel_values=pixel_values))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit-norm float32 embeddings of PIL images, one row each (one forward pass)."""
        return self._embed_pixels(self._pixels(images))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings of texts, one row each."""
        inputs = self.processor(text=list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            return self._features(self.model.get_text_features(**inputs))

    # ---- indexing ------------------------------------------------------------------------------

    def index_images(
        self,
        images: Iterable[ImageInput] | str | os.PathLike,
        *,
        batch_size: int | None = None,
        progress: bool = True,
    ) -> int:
        """Embed ``images`` in batches and append them to the index; return how many were added.

        ``images``: PIL images and/or image paths, folders among them (every image inside, sorted),
        or a single folder or file path. Unreadable files are skipped, warned about and listed in
        ``self.skipped``; they do not stop the others.
        """
        from vlm_course.progress import progress_bar  # a bar that stays readable in a saved notebook

        items = _expand(images)
        size = batch_size or self.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, got {size}")
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        added, skipped = 0, []
        # A helper thread reads and preprocesses the next batch while the model embeds this one.
        with progress_bar(total=len(items), desc="indexing", unit="img", disable=not progress) as bar, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-search-prep") as pool:
            pending = pool.submit(self._prepare, chunks[0]) if chunks else None
            for i, chunk in enumerate(chunks):
                pixels, paths, bad = pending.result()
                if i + 1 < len(chunks):
                    pending = pool.submit(self._prepare, chunks[i + 1])
                if paths:
                    self.index.add(self._embed_pixels(pixels), normalized=True)
                    self.paths.extend(paths)
                    added += len(paths)
                skipped.extend(bad)
                bar.update(len(chunk))
        if skipped:
            self.skipped.extend(skipped)
            listed = "\n  ".join(f"{src}: {why}" for src, why in skipped)
            warnings.warn(
                f"skipped {len(skipped)} unreadable image(s) (indexed {added}):\n  {listed}",
                UserWarning,
                stacklevel=2,
            )
        return added

    def _prepare(self, chunk: Sequence) -> tuple[object, list[str | None], list[tuple[str, str]]]:
        """Load and preprocess one batch: (pixel values or None, paths, skipped (source, reason))."""
        from vlm_course.images import ImageLoadError, load_image

        batch, paths, skipped = [], [], []
        for item in chunk:
            if isinstance(item, Image.Image):
                batch.append(item)
                paths.append(None)
                continue
            try:
                batch.append(load_image(item))
            except ImageLoadError as exc:
                skipped.append((str(item), str(exc)))
                continue
            paths.append(str(item))
        return (self._pixels(batch) if batch else None), paths, skipped

    # ---- search --------------------------------------------------------------------------------

    def search(self, query: str, top_k: int = 5) -> list[dict]:
        """The ``top_k`` images that best match the text ``query``, best first."""
        if not isinstance(query, str):
            raise TypeError(f"query must be text (str), got {type(query).__name__}; for images use search_by_image")
        if not query.strip():
            raise ValueError("query is empty: pass some text, e.g. 'a photo of a red circle'")
        k = _check_top_k(top_k)
        self._check_not_empty()
        return self.search_embedding(self.embed_text([query])[0], k)

    def search_by_image(self, image: ImageInput, top_k: int = 5) -> list[dict]:
        """The ``top_k`` indexed images most similar to ``image`` (a PIL image or a path), best first."""
        from vlm_course.images import load_image

        k = _check_top_k(top_k)
        self._check_not_empty()
        return self.search_embedding(self.embed_images([load_image(image)])[0], k)

    def search_embedding(self, vector: np.ndarray, top_k: int = 5) -> list[dict]:
        """Rank the index against one embedding vector (normalised here)."""
        k = _check_top_k(top_k)
        self._check_not_empty()
        idx, scores = self.index.search(np.asarray(vector, dtype=np.float32), k)
        return [{"index": int(i), "path": self.paths[i], "score": float(s)} for i, s in zip(idx, scores, strict=True)]

    def _check_not_empty(self) -> None:
        if len(self.index) == 0:
            raise ValueError("the index is empty: call index_images(...) (or load(path)) before searching")

    # ---- persistence ---------------------------------------------------------------------------

    def _identity(self) -> dict:
        return {"model_name": self.model_name, "profile": self.profile, "embedding_size": self.embedding_size}

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` (one ``.npz`` file) atomically: a temporary file, then a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": INDEX_FORMAT, **self._identity(), "count": len(self), "paths": self.paths}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, embeddings=np.asarray(self.index.vectors), meta=np.array(json.dumps(meta)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | os.PathLike) -> int:
        """Replace the index with the one saved at ``path``; return its size.

        Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that is not an
        index, or one built by another model (name, profile or embedding size differ).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no saved index there; build one with index_images(...) and save(path)")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                vectors = np.asarray(data["embeddings"], dtype=np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path} is not an index written by CLIPImageSearch.save ({exc})") from None
        if meta.get("format") != INDEX_FORMAT:
            raise ValueError(f"{path} is not an index written by CLIPImageSearch.save (format {meta.get('format')!r})")
        theirs = {key: meta.get(key) for key in self._identity()}
        if theirs != self._identity():
            raise ValueError(
                f"{path} was built with {_describe(theirs)}, but this search uses {_describe(self._identity())}; "
                f"their embeddings cannot be compared. Re-index the images with this model, or open the index "
                f"with CLIPImageSearch({theirs['model_name']!r})."
            )
        if vectors.shape != (meta["count"], self.embedding_size) or len(meta["paths"]) != meta["count"]:
            raise ValueError(f"{path} is damaged: {vectors.shape[0]} embeddings for {meta['count']} images")
        self.index = EmbeddingIndex(self.embedding_size, self.index.backend)
        self.index.add(vectors, normalized=True)
        self.paths = list(meta["paths"])
        return len(self)


def _describe(identity: dict) -> str:
    return f"{identity['model_name']!r} ({identity['profile']} profile, {identity['embedding_size']}-d embeddings)"


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _expand(images: Iterable[ImageInput] | str | os.PathLike) -> list[Image.Image | str | os.PathLike]:
    """A flat list of PIL images and paths: folders become their image files (sorted)."""
    from vlm_course.images import scan_folder

    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    items: list[Image.Image | str | os.PathLike] = []
    for item in images:
        if isinstance(item, Image.Image):
            items.append(item)
        elif isinstance(item, (str, os.PathLike)):
            items.extend(scan_folder(item) if Path(item).is_dir() else [item])
        else:
            raise TypeError(f"cannot index a {type(item).__name__}: pass PIL images, image paths or a folder")
    return items
