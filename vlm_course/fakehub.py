"""Real-size checkpoints with random weights, written into a Hugging Face cache (for offline tests).

``build_fake_hub(["openai/clip-vit-base-patch32"], cache_dir)`` writes, for each course hub id,
what the hub client would have downloaded: the catalogue's architecture config, sharded safetensors
weights of the real shapes (random values, written shard by shard so a 7B model never sits in
memory whole), and processor files. The processor files are the toy checkpoint's, adapted to the
real architecture: image sizes and patch size from the vision config, and a tokenizer whose
special tokens sit at the ids the real config names, padded with filler tokens to the real
vocabulary size. Everything lands in the hub cache layout (``models--org--name/refs/main``,
``snapshots/<revision>/``, ``blobs/``), so with ``HF_HUB_OFFLINE=1`` ``from_pretrained(hub_id)``
and ``huggingface_hub.try_to_load_from_cache`` find it as if it had been downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GenerationConfig, PretrainedConfig

from . import toy
from .catalogue import course_model
from .sizes.count import meta_model

SHARD_BYTES = 512 << 20
END_BIAS = 50.0
WEIGHTS_INDEX = "model.safetensors.index.json"
# Files the hub stores with Git LFS: their blob is named by the sha256 of the content.
LFS_SUFFIXES = (".safetensors", ".bin", ".model")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "special_tokens_map.json",
                    "chat_template.jinja", "chat_template.json")


class FakeHubError(ValueError):
    """A checkpoint that cannot be faked (no toy processor files, or a tokenizer that does not fit)."""


def fake_revision(hub_id: str) -> str:
    """A stable 40-hex-digit revision for a fake snapshot of ``hub_id``."""
    return hashlib.sha1(f"vlm-course fakehub {hub_id}".encode()).hexdigest()


def repo_folder(cache_dir: str | os.PathLike, hub_id: str) -> Path:
    """``<cache>/models--org--name``, the folder the hub client keeps a model repository in."""
    return Path(cache_dir) / ("models--" + hub_id.replace("/", "--"))


def _text_config(config: PretrainedConfig) -> PretrainedConfig:
    return getattr(config, "text_config", None) or config


# ---------------------------------------------------------------- weights


def _random_like(name: str, shape: torch.Size, dtype: torch.dtype, std: float, gen: torch.Generator) -> torch.Tensor:
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "bias":
        return torch.zeros(shape, dtype=dtype)
    if "norm" in name.lower() and leaf == "weight":
        return torch.ones(shape, dtype=dtype)
    return torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=gen)


def _weight_tensors(model: torch.nn.Module, std: float, seed: int,
                    end_token: int | None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, random tensor) for every entry ``save_pretrained`` would write; tied weights once."""
    gen = torch.Generator().manual_seed(seed)
    vocab = _text_config(model.config).vocab_size
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        values = _random_like(name, tensor.shape, tensor.dtype, std, gen)
        if end_token is not None and name.endswith(".bias") and tuple(values.shape) == (vocab,):
            values[end_token] = END_BIAS
        yield name, values


def end_of_text_id(config: PretrainedConfig) -> int | None:
    """The token a text decoder's ``generate`` stops at (BLIP stops at ``[SEP]``, others at eos)."""
    text = _text_config(config)
    sep = getattr(text, "sep_token_id", None)
    return sep if sep is not None else getattr(text, "eos_token_id", None)


def write_random_weights(model: torch.nn.Module, folder: Path, *, seed: int = 0,
                         shard_bytes: int = SHARD_BYTES, end_texts_early: bool = False) -> int:
    """Save random weights of ``model``'s shapes as sharded safetensors plus index; returns the bytes.

    ``end_texts_early`` raises the end-of-text logit in the output layer's bias (where the model has
    one, as BLIP does), so greedy generation stops after one token instead of running to
    ``max_new_tokens`` on noise: a test then pays for the real-size forward passes, not for text.
    """
    std = float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = total = 0
    names_per_shard: list[list[str]] = [[]]
    tmp_names: list[str] = []

    def flush() -> None:
        tmp = f"shard-{len(tmp_names):05d}.safetensors"
        save_file(shards[-1], str(folder / tmp), metadata={"format": "pt"})
        tmp_names.append(tmp)
        shards[-1] = {}

    end_token = end_of_text_id(model.config) if end_texts_early else None
    for name, tensor in _weight_tensors(model, std, seed, end_token):
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            flush()
            names_per_shard.append([])
            size = 0
        shards[-1][name] = tensor
        names_per_shard[-1].append(name)
        size += nbytes
        total += nbytes
    flush()
    count = len(tmp_names)
    weight_map = {}
    for i, (tmp, names) in enumerate(zip(tmp_names, names_per_shard), start=1):
        final = f"model-{i:05d}-of-{count:05d}.safetensors"
        (folder / tmp).rename(folder / final)
        weight_map.update(dict.fromkeys(names, final))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / WEIGHTS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return total


# ---------------------------------------------------------------- tokenizer


def _special_targets(tok_config: dict, proc_config: dict, config: PretrainedConfig) -> dict[str, int]:
    """Token string -> the id the real config expects it at (bos/eos/sep/pad, the image token)."""
    text = _text_config(config)
    targets: dict[str, int] = {}
    for role in ("eos", "bos", "sep", "pad"):
        token, wanted = tok_config.get(f"{role}_token"), getattr(text, f"{role}_token_id", None)
        if isinstance(token, str) and isinstance(wanted, int) and token not in targets and wanted not in targets.values():
            targets[token] = wanted
    image_token = proc_config.get("image_token")
    image_id = getattr(config, "image_token_id", None)
    if image_id is None:
        image_id = getattr(config, "image_token_index", None)
    if isinstance(image_token, str) and isinstance(image_id, int):
        targets[image_token] = image_id
    return targets


def _filler(model_type: str, i: int) -> str:
    return f"[unused{i}]" if model_type == "WordPiece" else f"<|unused{i}|>"


def _renumber(processor: object, new_id: dict[int, int]) -> None:
    """Rewrite the token ids a post-processor spells out (template and RoBERTa/BERT processors)."""
    if isinstance(processor, list):
        for item in processor:
            _renumber(item, new_id)
        return
    if not isinstance(processor, dict):
        return
    for key in ("sep", "cls"):
        if isinstance(processor.get(key), list):
            processor[key][1] = new_id[processor[key][1]]
    for special in (processor.get("special_tokens") or {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    _renumber(processor.get("processors"), new_id)


def real_size_tokenizer(tokenizer_json: dict, targets: dict[str, int], vocab_size: int) -> dict:
    """The tokenizer with ``targets`` tokens moved to their ids and fillers up to ``vocab_size`` ids."""
    model = tokenizer_json["model"]
    old: dict[str, int] = dict(model["vocab"])
    for added in tokenizer_json["added_tokens"]:
        old.setdefault(added["content"], added["id"])
    missing = sorted(set(targets) - set(old))
    if missing:
        raise FakeHubError(f"the toy tokenizer has no token(s) {missing} that the real config names")
    if len(old) > vocab_size or max(targets.values(), default=0) >= vocab_size:
        raise FakeHubError(f"the toy tokenizer ({len(old)} tokens) does not fit a vocabulary of {vocab_size}")
    taken = set(targets.values())
    free = (i for i in range(vocab_size) if i not in taken)
    new: dict[str, int] = dict(targets)
    for token, _ in sorted(old.items(), key=lambda kv: kv[1]):
        if token not in new:
            new[token] = next(free)
    new_id = {old[t]: new[t] for t in old}
    # Added tokens go into the model's vocabulary too: the tokenizers library keeps their ids only then.
    in_vocab = dict(new)
    used = set(new.values())
    for i in range(vocab_size):
        if i not in used:
            in_vocab[_filler(model["type"], i)] = i
    out = json.loads(json.dumps(tokenizer_json))
    out["model"]["vocab"] = dict(sorted(in_vocab.items(), key=lambda kv: kv[1]))
    for added in out["added_tokens"]:
        added["id"] = new[added["content"]]
    out["added_tokens"].sort(key=lambda a: a["id"])
    _renumber(out.get("post_processor"), new_id)
    return out


# ---------------------------------------------------------------- processor


def _resize(entry: dict, image_size: int) -> dict:
    return {k: image_size for k in entry} if "height" in entry or "width" in entry else {
        k: (image_size if k == "shortest_edge" else v) for k, v in entry.items()}


def real_size_processor_config(proc_config: dict, config: PretrainedConfig) -> dict:
    """The toy ``processor_config.json`` with the real vision tower's image size, patch size and
    image-token arithmetic (feature selection, extra class token)."""
    vision = config.vision_config
    out = json.loads(json.dumps(proc_config))
    image = out.get("image_processor", {})
    for key in ("size", "crop_size"):
        if isinstance(image.get(key), dict):
            image[key] = _resize(image[key], vision.image_size)
    if "patch_size" in out:
        out["patch_size"] = vision.patch_size
    if "vision_feature_select_strategy" in out:
        out["vision_feature_select_strategy"] = config.vision_feature_select_strategy
    if "num_additional_image_tokens" in out:  # the class token a CLIP tower adds (SigLIP has none)
        out["num_additional_image_tokens"] = int(vision.model_type == "clip_vision_model")
    return out


def write_processor_files(hub_id: str, config: PretrainedConfig, folder: Path) -> None:
    """Processor, tokenizer and chat-template files for ``hub_id``, adapted from its toy checkpoint."""
    toy_dir = toy.model_path(course_model(hub_id).toy_name)
    proc_path = toy_dir / "processor_config.json"
    if not proc_path.is_file():
        raise FakeHubError(f"toy checkpoint {toy_dir} has no processor_config.json to adapt for {hub_id}")
    proc_config = json.loads(proc_path.read_text())
    (folder / "processor_config.json").write_text(
        json.dumps(real_size_processor_config(proc_config, config), indent=2) + "\n")
    tok_config = json.loads((toy_dir / "tokenizer_config.json").read_text())
    for name in _TOKENIZER_FILES:
        if (toy_dir / name).is_file():
            shutil.copyfile(toy_dir / name, folder / name)
    text = _text_config(config)
    if (toy_dir / "tokenizer.json").is_file():
        tokenizer = real_size_tokenizer(json.loads((toy_dir / "tokenizer.json").read_text()),
                                        _special_targets(tok_config, proc_config, config), text.vocab_size)
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- checkpoint and cache


def write_checkpoint(hub_id: str, folder: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                     seed: int = 0, end_texts_early: bool = False) -> Path:
    """A from_pretrained-ready folder of ``hub_id`` with the real architecture and random weights
    (``end_texts_early``: see ``write_random_weights``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entry = course_model(hub_id)
    config = entry.config()
    model = meta_model(config, entry.model_class, dtype=dtype)
    model.config.architectures = [entry.model_class]
    model.config.dtype = dtype
    model.config.save_pretrained(folder)
    if model.can_generate():
        GenerationConfig.from_model_config(model.config).save_pretrained(folder)
    write_random_weights(model, folder, seed=seed, end_texts_early=end_texts_early)
    write_processor_files(entry.hub_id, config, folder)
    return folder


def _blob_name(path: Path) -> str:
    """The name the hub client gives a file's blob: sha256 for LFS files, else the git blob sha1."""
    if path.name.endswith(LFS_SUFFIXES):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                digest.update(chunk)
        return digest.hexdigest()
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_to_cache(folder: str | os.PathLike, hub_id: str, cache_dir: str | os.PathLike,
                 revision: str | None = None) -> Path:
    """Move a checkpoint folder's files into the hub cache as ``hub_id`` at ``revision`` (``main`` points there).

    ``revision`` defaults to a stable made-up commit hash (``fake_revision``)."""
    revision = revision or fake_revision(hub_id)
    repo = repo_folder(cache_dir, hub_id)
    blobs, snapshot = repo / "blobs", repo / "snapshots" / revision
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        blob = blobs / _blob_name(path)
        if not blob.exists():
            shutil.move(str(path), blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def build_fake_hub(hub_ids: Iterable[str], cache_dir: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                   seed: int = 0, end_texts_early: bool = False) -> dict[str, Path]:
    """Write real-size random-weight checkpoints of ``hub_ids`` into the hub cache; hub id -> snapshot folder."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    snapshots = {}
    for hub_id in hub_ids:
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fakehub-") as tmp:
            write_checkpoint(hub_id, tmp, dtype=dtype, seed=seed, end_texts_early=end_texts_early)
            snapshots[hub_id] = add_to_cache(tmp, hub_id, cache_dir, course_model(hub_id).revision)
    return snapshots
