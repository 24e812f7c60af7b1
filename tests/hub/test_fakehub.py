"""fakehub's parts on toy-sized inputs: tokenizer renumbering, processor sizes, weights, cache layout."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import scan_cache_dir, try_to_load_from_cache
from tokenizers import Tokenizer
from transformers import AutoConfig, CLIPModel

from vlm_course import toy
from vlm_course.catalogue import course_model
from vlm_course.fakehub import (
    FakeHubError,
    add_to_cache,
    end_of_text_id,
    fake_revision,
    real_size_processor_config,
    real_size_tokenizer,
    write_random_weights,
)


def _toy_tokenizer(name: str) -> dict:
    return json.loads((toy.model_path(name) / "tokenizer.json").read_text())


@pytest.mark.parametrize(("name", "targets", "vocab_size"), [
    ("blip-captioning", {"[DEC]": 30522, "[SEP]": 102, "[PAD]": 0}, 30524),
    ("clip", {"<|endoftext|>": 49407, "<|startoftext|>": 49406}, 49408),
    ("llava", {"</s>": 2, "<s>": 1, "<pad>": 32001, "<image>": 32000}, 32064),
])
def test_real_size_tokenizer_moves_special_tokens_and_fills_the_vocabulary(name, targets, vocab_size):
    before = Tokenizer.from_str(json.dumps(_toy_tokenizer(name)))
    after = Tokenizer.from_str(json.dumps(real_size_tokenizer(_toy_tokenizer(name), targets, vocab_size)))
    assert after.get_vocab_size(with_added_tokens=True) == vocab_size
    for token, wanted in targets.items():
        assert after.token_to_id(token) == wanted
    text = "a red square to the left of a blue circle"
    old, new = before.encode(text), after.encode(text)
    assert new.tokens == old.tokens
    assert [after.id_to_token(i) for i in new.ids] == old.tokens
    assert after.decode(new.ids) == before.decode(old.ids)


def test_real_size_tokenizer_refuses_what_does_not_fit():
    with pytest.raises(FakeHubError, match="no token"):
        real_size_tokenizer(_toy_tokenizer("clip"), {"<nope>": 5}, 49408)
    with pytest.raises(FakeHubError, match="does not fit"):
        real_size_tokenizer(_toy_tokenizer("clip"), {}, 100)


def test_real_size_processor_config_takes_image_and_patch_size_from_the_vision_tower():
    toy_llava = json.loads((toy.model_path("llava") / "processor_config.json").read_text())
    out = real_size_processor_config(toy_llava, course_model("llava-hf/llava-1.5-7b-hf").config())
    image = out["image_processor"]
    assert image["size"] == {"shortest_edge": 336} and image["crop_size"] == {"height": 336, "width": 336}
    assert out["patch_size"] == 14 and image["image_mean"] == toy_llava["image_processor"]["image_mean"]
    assert (out["vision_feature_select_strategy"], out["num_additional_image_tokens"]) == ("default", 1)
    small = real_size_processor_config(toy_llava, course_model("llava-hf/llava-interleave-qwen-0.5b-hf").config())
    assert small["image_processor"]["size"] == {"shortest_edge": 384} and small["patch_size"] == 14
    assert (small["vision_feature_select_strategy"], small["num_additional_image_tokens"]) == ("full", 0)
    toy_blip = json.loads((toy.model_path("blip-captioning") / "processor_config.json").read_text())
    blip = real_size_processor_config(toy_blip, course_model("Salesforce/blip-image-captioning-base").config())
    assert blip["image_processor"]["size"] == {"height": 384, "width": 384}


def test_random_weights_are_sharded_and_load_back_whole(tmp_path):
    config = AutoConfig.from_pretrained(toy.model_path("clip"))
    with torch.device("meta"):
        meta = CLIPModel(config)
    total = write_random_weights(meta, tmp_path, shard_bytes=200_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[-1] == f"model-{len(shards):05d}-of-{len(shards):05d}.safetensors"
    assert index["metadata"]["total_size"] == total
    config.save_pretrained(tmp_path)
    model, info = CLIPModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    assert float(model.text_model.final_layer_norm.weight.detach().mean()) == 1.0
    assert 0 < float(model.visual_projection.weight.detach().std()) < 0.1


def test_add_to_cache_is_found_offline_by_the_hub_client(tmp_path):
    folder = tmp_path / "checkpoint"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "clip"}')
    (folder / "sub" / "weights.safetensors").write_bytes(b"\0" * 64)
    cache = tmp_path / "hub"
    snapshot = add_to_cache(folder, "org/name", cache)
    assert snapshot.name == fake_revision("org/name") and len(snapshot.name) == 40
    assert (cache / "models--org--name" / "refs" / "main").read_text() == snapshot.name
    found = try_to_load_from_cache("org/name", "sub/weights.safetensors", cache_dir=cache)
    assert found == str(snapshot / "sub" / "weights.safetensors")
    (repo,) = scan_cache_dir(cache).repos
    assert repo.repo_id == "org/name" and repo.nb_files == 2 and repo.size_on_disk == 64 + len('{"model_type": "clip"}')


@pytest.mark.parametrize("end_texts_early", [False, True])
def test_end_texts_early_makes_greedy_generation_stop_at_once(tmp_path, end_texts_early):
    from transformers import BlipForConditionalGeneration

    config = AutoConfig.from_pretrained(toy.model_path("blip-captioning"))
    with torch.device("meta"):
        meta = BlipForConditionalGeneration(config)
    write_random_weights(meta, tmp_path, end_texts_early=end_texts_early)
    config.save_pretrained(tmp_path)
    model = BlipForConditionalGeneration.from_pretrained(tmp_path).eval()
    pixels = torch.zeros(1, 3, config.vision_config.image_size, config.vision_config.image_size)
    with torch.no_grad():
        out = model.generate(pixel_values=pixels, max_new_tokens=8)
    stopped = out[0, 1:].tolist() == [end_of_text_id(config)]
    assert stopped == end_texts_early
