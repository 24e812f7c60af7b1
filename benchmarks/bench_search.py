"""Benchmark of the exercise-1 reference image search (``solutions/image_search.py``).

Measured in one run and printed as ratios (no pass/fail):

1. Indexing throughput: images/s one image at a time (processor + model per image) against
   ``index_images`` in batches (goal: at least 3x), in alternating rounds; ``--real-size`` runs it
   on the real CLIP ViT-B/32 architecture with random weights instead of the toy.
2. Per-query top-k latency over N random unit vectors (default N = 10k, 100k, 1M; size 512):
   the reference ``EmbeddingIndex.search`` against the memory-bandwidth floor (numpy
   matrix-vector product + ``argpartition``; goal: at most 1.1x of it), a sort-everything
   baseline, and FAISS ``IndexFlatIP`` when installed.

Usage::

    python benchmarks/bench_search.py                       # everything, about 1-2 minutes
    python benchmarks/bench_search.py --sizes 10000,100000  # smaller search part
    python benchmarks/bench_search.py --skip-indexing --queries 50
    python benchmarks/bench_search.py --skip-search --real-size   # real-size CLIP ViT-B/32, random weights

1M x 512 float32 vectors take 2 GB; the reference index holds its own copy and FAISS another,
so the 1M row needs about 6 GB of free memory (sizes that do not fit are skipped).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_reference():
    """``solutions/image_search.py`` as a module (the folder is not a package)."""
    from vlm_course.submission import import_file

    return import_file(REPO / "solutions" / "image_search.py", "bench_reference_image_search")


def median_ms(methods: dict[str, Callable[[np.ndarray], object]], queries: np.ndarray, repeats: int) -> dict[str, float]:
    """Median wall time of one query per method, in milliseconds.

    The methods take turns on every query (in a rotating order), so a change in machine load
    during the run affects them all alike.
    """
    names = list(methods)
    for name in names:  # warm-up
        methods[name](queries[0])
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for i, q in enumerate(queries):
            shift = (r * len(queries) + i) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                methods[name](q)
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    step = 65536
    for start in range(0, n, step):  # in chunks: no second full-size temporary
        block = rng.standard_normal((min(step, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


# ---- 1. indexing throughput ---------------------------------------------------------------------


def bench_indexing(ref, n_images: int, batch_size: int, model_name: str, rounds: int) -> None:
    from vlm_course import shapesworld as sw

    print(f"\n== indexing throughput: {n_images} ShapesWorld images (224 px), {model_name}")
    search = ref.CLIPImageSearch(model_name, batch_size=batch_size)
    image_processor = search.processor.image_processor
    print(f"   device {search.device}, embedding size {search.embedding_size}, torch threads {search._torch.get_num_threads()}")
    print(f"   {sum(p.numel() for p in search.model.parameters()) / 1e6:.1f}M parameters, {search.model.dtype}, "
          f"image processor {type(image_processor).__name__} ({_size_text(image_processor.size)}), profile {search.profile}")
    images = [s.render() for s in sw.sample_scenes(n_images, seed=2024)]
    search.embed_images(images[:batch_size])  # warm-up of both shapes (allocations, lazy init)
    search.embed_images(images[:1])

    results: dict[str, np.ndarray] = {}

    def one_at_a_time() -> None:
        results["single"] = np.concatenate([search.embed_images([im]) for im in images])

    def indexed(size: int) -> Callable[[], float]:
        def run() -> float:
            fresh = copy.copy(search)  # the same model and processor, an empty index
            fresh.index, fresh.paths, fresh.skipped = ref.EmbeddingIndex(search.embedding_size), [], []
            start = time.perf_counter()
            fresh.index_images(images, batch_size=size, progress=False)
            results[f"index{size}"] = fresh.index.vectors
            return time.perf_counter() - start
        return run

    rows = {
        "one image at a time (processor + model per image)": one_at_a_time,
        "index_images(batch_size=1)": indexed(1),
        f"index_images(batch_size={batch_size})": indexed(batch_size),
    }
    times: dict[str, list[float]] = {label: [] for label in rows}
    labels = list(rows)
    for r in range(rounds):  # the methods take turns, in a rotating order, so load changes hit all alike
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            start = time.perf_counter()
            inner = rows[label]()
            times[label].append(inner if inner is not None else time.perf_counter() - start)
    median = {label: statistics.median(t) for label, t in times.items()}
    for label, t in median.items():
        print(f"   {label:52s} {n_images / t:8.1f} img/s   {1000 * t / n_images:7.2f} ms/img")
    single, batched = times[labels[0]], times[labels[2]]
    per_round = ", ".join(f"{a / b:.2f}x" for a, b in zip(single, batched))
    same = np.allclose(results["single"], results[f"index{batch_size}"], atol=1e-4)
    print(f"   batched vs one at a time: {median[labels[0]] / median[labels[2]]:.2f}x faster, median of {rounds} "
          f"rounds ({per_round}; goal >= 3x); same embeddings: {same}")

    pixels = search._pixels(images[:batch_size])
    prep = min(_seconds(lambda: search._pixels(images[:batch_size])) for _ in range(3)) / batch_size
    model_batched = min(_seconds(lambda: search._embed_pixels(pixels)) for _ in range(3)) / batch_size
    model_single = min(_seconds(lambda: [search._embed_pixels(pixels[i : i + 1]) for i in range(8)])
                       for _ in range(3)) / 8
    print(f"   where the time goes (best of 3): preprocessing {1000 * prep:.2f} ms/img in batches of {batch_size}; "
          f"model {1000 * model_batched:.2f} ms/img batched, {1000 * model_single:.2f} ms/img one by one")


def _size_text(size: object) -> str:
    fields = size if isinstance(size, dict) else vars(size)
    return ", ".join(f"{k} {v}" for k, v in fields.items() if v)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def use_real_size_clip(model_name: str, cache: str | None) -> Path:
    """Point the Hugging Face client at a cache holding ``model_name`` at real size with random weights
    (built there first when missing), offline, hub profile. Call before transformers is imported."""
    cache_dir = Path(cache) if cache else Path(tempfile.mkdtemp(prefix="bench-search-hub-"))
    os.environ["HF_HUB_CACHE"] = str(cache_dir)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from vlm_course.fakehub import build_fake_hub, repo_folder

    if not (repo_folder(cache_dir, model_name) / "refs" / "main").is_file():
        start = time.perf_counter()
        build_fake_hub([model_name], cache_dir)
        print(f"built real-size {model_name} with random weights in {cache_dir} ({time.perf_counter() - start:.0f} s)")
    return cache_dir


# ---- 2. query latency ---------------------------------------------------------------------------


def bench_queries(ref, sizes: list[int], dim: int, k: int, n_queries: int, repeats: int, use_faiss: bool) -> None:
    import psutil

    faiss = None
    if use_faiss:
        try:
            import faiss
        except ImportError:
            print("\n(FAISS is not installed: pip install faiss-cpu to add its column)")
    print(f"\n== top-{k} latency per query, {dim}-d float32 unit vectors, median of {n_queries} queries x {repeats}"
          " (x 1 at 1 GiB and more)")
    header = f"   {'N':>9s} {'floor ms':>9s} {'GB/s':>6s} {'reference':>10s} {'sort-all':>9s}"
    header += f" {'faiss':>9s}" if faiss else ""
    print(header + "   (ratios are to the floor: numpy matmul + argpartition)")
    queries = random_unit_vectors(n_queries, dim, seed=1)
    for n in sizes:
        copies = 3 if faiss else 2
        need = copies * n * dim * 4
        if need > 0.9 * psutil.virtual_memory().available:
            print(f"   {n:9d} skipped: needs about {need / 2**30:.1f} GiB of free memory")
            continue
        vectors = random_unit_vectors(n, dim, seed=0)
        index = ref.EmbeddingIndex(dim)
        index.add(vectors, normalized=True)
        del vectors
        gc.collect()
        matrix = index.vectors  # the same rows the reference searches

        def floor(q, matrix=matrix):
            scores = matrix @ q
            return np.argpartition(scores, -k)[-k:]

        def sort_all(q, matrix=matrix):
            return np.argsort(-(matrix @ q))[:k]

        def reference(q, index=index):
            return index.search(q, k)

        methods = {"floor": floor, "reference": reference, "sort-all": sort_all}
        flat = None
        if faiss:
            flat = faiss.IndexFlatIP(dim)
            flat.add(matrix)
            methods["faiss"] = lambda q, flat=flat: flat.search(q[None, :], k)
        for q in queries[:3]:  # all methods agree on the top-k set
            want = set(floor(q).tolist())
            assert set(reference(q)[0].tolist()) == want and set(sort_all(q).tolist()) == want
            if flat is not None:
                assert set(flat.search(q[None, :], k)[1][0].tolist()) == want
        # one pass over the largest index already takes ~0.1-0.5 s: time fewer passes there
        ms = median_ms(methods, queries, repeats if n * dim * 4 < 2**30 else 1)
        line = f"   {n:9d} {ms['floor']:9.3f} {n * dim * 4 / ms['floor'] / 1e6:6.1f}"
        line += f" {ms['reference'] / ms['floor']:9.2f}x {ms['sort-all'] / ms['floor']:8.2f}x"
        if "faiss" in ms:
            line += f" {ms['faiss'] / ms['floor']:8.2f}x"
        verdict = "ok" if ms["reference"] <= 1.1 * ms["floor"] else "above the 1.1x goal"
        print(f"{line}   reference {ms['reference']:.3f} ms ({verdict})")
        del index, matrix, flat, methods
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated N (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=20, help="queries per size (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the queries, 1 for indexes of 1 GiB and more (default: %(default)s)")
    parser.add_argument("--no-faiss", action="store_true", help="leave FAISS out even when installed")
    parser.add_argument("--images", type=int, default=256, help="images for the indexing part (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds of the indexing part (default: %(default)s)")
    parser.add_argument("--model", default="openai/clip-vit-base-patch32")
    parser.add_argument("--real-size", action="store_true",
                        help="index with the real-size architecture of --model with random weights, written into a "
                             "Hugging Face cache first (about 600 MB for CLIP ViT-B/32, no download; implies --profile hub)")
    parser.add_argument("--hub-cache", help="with --real-size: keep that cache in this folder and reuse it (default: a temporary one)")
    parser.add_argument(
        "--profile", default=os.environ.get("VLM_COURSE_PROFILE", "toy"), choices=("toy", "hub", "auto"),
        help="model profile for the indexing part (default: $VLM_COURSE_PROFILE, else toy)",
    )
    parser.add_argument("--skip-indexing", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    os.environ["VLM_COURSE_PROFILE"] = "hub" if args.real_size else args.profile
    cache = use_real_size_clip(args.model, args.hub_cache) if args.real_size and not args.skip_indexing else None

    ref = load_reference()
    print(f"numpy {np.__version__}, {os.cpu_count()} logical CPUs")
    started = time.perf_counter()
    if not args.skip_indexing:
        from vlm_course.quiet import quiet_notebook

        quiet_notebook()
        try:
            bench_indexing(ref, args.images, args.batch_size, args.model, args.rounds)
        finally:
            if cache is not None and not args.hub_cache:
                shutil.rmtree(cache, ignore_errors=True)
    if not args.skip_search:
        bench_queries(ref, sizes, args.dim, args.k, args.queries, args.repeats, not args.no_faiss)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
