"""The reference chatbot's extras beyond the learner contract (always tests ``solutions/``, no points):
prefix-stable rendering, exact image-token counts (LLaVA and LLaVA-NeXT any-res), cache cropping when
history re-renders differently, context dropping, streaming and error recovery.

Uses tiny randomly initialised LLaVA / LLaVA-NeXT models with the toy tokenizer and templates, so
these checks do not depend on how well the toy checkpoints are trained.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlm_course import shapesworld as sw
from vlm_course.profiles import resolve
from vlm_course.submission import import_file

SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"

QUESTIONS = ("Describe this image.", "How many shapes are there?", "Is there a red circle?", "What color is the square?")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ref():
    return import_file(SOLUTIONS / "chatbot.py")


@pytest.fixture(scope="module")
def tiny():
    """name -> (random model, processor) for 'llava' and 'llava-next' (64 px images, 64 image tokens)."""
    from transformers import AutoProcessor, CLIPImageProcessor, CLIPVisionConfig

    from vlm_course.toybuild.llava import make_model, make_processor

    tokenizer = AutoProcessor.from_pretrained(resolve("llava-hf/llava-1.5-7b-hf", verbose=False)).tokenizer
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=64, patch_size=8)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    built = {}
    for name in ("llava", "llava-next"):
        torch.manual_seed(0)
        model = make_model(name, tokenizer, vision).eval()
        built[name] = (model, make_processor(name, tokenizer, image_processor, vision))
    return built


@pytest.fixture(scope="module")
def image():
    return sw.sample_scene(5).render()


def _bot(ref, tiny, name="llava", **options):
    model, processor = tiny[name]
    options.setdefault("max_new_tokens", 4)
    return ref.MultimodalChatbot.from_model(model, processor, **options)


@pytest.mark.parametrize("name", ["llava", "llava-next"])
def test_template_renders_prefix_stable_text(ref, tiny, name):
    bot = _bot(ref, tiny, name)
    turns = [(q, f"reply {i}") for i, q in enumerate(QUESTIONS)]
    for k in range(len(turns)):
        asked = bot.render(turns[:k], turns[k][0])
        assert asked.startswith(bot.render(turns[:k])) if k else True
        assert bot.render(turns[: k + 1]).startswith(asked), "the reply must extend the prompt it answered"


@pytest.mark.parametrize("name", ["llava", "llava-next"])
@pytest.mark.parametrize("size", [(224, 224), (200, 96), (64, 150)])
def test_encode_counts_image_tokens_exactly_as_the_processor(ref, tiny, name, size):
    model, processor = tiny[name]
    bot = _bot(ref, tiny, name)
    picture = sw.sample_scene(3).render().resize(size)
    bot.set_image(picture)
    text = bot.render([(QUESTIONS[0], "The image shows a red circle."), (QUESTIONS[1], "Two.")], QUESTIONS[2])
    want = processor(images=[picture], text=[text], return_tensors="pt")["input_ids"][0]
    assert bot.encode(text).tolist() == want.tolist()
    if name == "llava-next":  # any-res: the count depends on the image size
        assert bot._n_image_tokens == int((want == bot.image_token_id).sum())


@pytest.mark.parametrize("name", ["llava", "llava-next"])
def test_reuse_gives_the_same_greedy_replies_and_prefills_less(ref, tiny, image, name):
    results = {}
    for reuse in (True, False):
        bot = _bot(ref, tiny, name, reuse_cache=reuse)
        bot.set_image(image)
        results[reuse] = ([bot.chat(q) for q in QUESTIONS], bot.stats)
    assert results[True][0] == results[False][0]
    reuse_stats, plain_stats = results[True][1], results[False][1]
    for before, now, plain in zip(reuse_stats, reuse_stats[1:], plain_stats[1:], strict=False):
        assert now["reused_tokens"] >= before["prompt_tokens"], "at least the previous prompt comes from the cache"
        # random weights may reply with tokens the tokenizer would split differently: those are prefilled again
        assert now["tokens_prefilled"] <= now["prompt_tokens"] - before["prompt_tokens"]
        assert plain["tokens_prefilled"] == plain["prompt_tokens"]


def test_history_rendered_differently_is_cropped_to_the_common_prefix(ref, tiny, image):
    """A template whose first line changes every turn: the cache is only valid up to there."""
    model, processor = tiny["llava"]
    header = "{{ 'Turns: ' ~ (messages | length) ~ '\n' }}"
    replies = {}
    for reuse in (True, False):
        bot = _bot(ref, tiny, reuse_cache=reuse)
        bot.set_image(image)
        original = processor.chat_template
        processor.chat_template = header + original
        try:
            replies[reuse] = [bot.chat(q) for q in QUESTIONS[:3]]
            image_at = int((bot.encode(bot.render([], QUESTIONS[0])) == bot.image_token_id).nonzero()[0])
        finally:
            processor.chat_template = original
        if reuse:
            reused = [s["reused_tokens"] for s in bot.stats]
    assert replies[True] == replies[False]
    assert reused[0] == 0 and all(0 < r < image_at for r in reused[1:]), (
        f"only the tokens before the header's count can be reused (image at {image_at}): {reused}"
    )


def test_oldest_turns_after_the_image_turn_are_dropped(ref, tiny, image):
    bot = _bot(ref, tiny, max_context=150, max_new_tokens=3)
    bot.set_image(image)
    asked = [f"{q} ({i})" for i, q in enumerate(QUESTIONS * 4)]
    for question in asked:
        bot.chat(question)
        assert bot.last_stats["context_tokens"] <= 150
    assert len(bot.history) == len(asked)
    kept = [m for m in bot.messages if m["role"] == "user"]
    texts = [c["text"] for m in kept for c in m["content"] if c["type"] == "text"]
    assert texts[0] == asked[0], "the image turn stays"
    assert any(c["type"] == "image" for c in kept[0]["content"]), "the image stays in the first user message"
    assert texts[-1] == asked[-1], "the newest message stays"
    assert texts[1:] == asked[len(asked) - len(texts) + 1 :], "the dropped turns are the oldest after the image turn"
    assert sum(s["dropped_turns"] for s in bot.stats) == len(asked) - len(texts)


def test_image_moves_to_the_newest_message_when_nothing_else_fits(ref, tiny, image):
    bot = _bot(ref, tiny, max_context=100, max_new_tokens=3)
    bot.set_image(image)
    bot.chat(" ".join(["Describe this image."] * 6))
    bot.chat("How many shapes are there?")
    users = [m for m in bot.messages if m["role"] == "user"]
    assert len(users) == 1 and users[0]["content"][0]["type"] == "image"
    assert users[0]["content"][1]["text"] == "How many shapes are there?"
    with pytest.raises(ValueError, match="shorten the message or lower max_new_tokens"):
        bot.chat(" ".join(["Describe this image."] * 20))


def test_streaming_pieces_add_up_to_the_reply(ref, tiny, image):
    bot = _bot(ref, tiny, max_new_tokens=6)
    bot.set_image(image)
    pieces: list[str] = []
    reply = bot.chat(QUESTIONS[0], on_text=pieces.append)
    assert "".join(pieces).strip() == reply
    streamed = list(bot.chat_stream(QUESTIONS[1]))
    assert "".join(streamed).strip() == bot.history[-1][1]
    assert len(bot.history) == 2 and bot.last_stats["reused_tokens"] > 0


def test_chat_stream_raises_in_the_callers_thread(ref, tiny):
    bot = _bot(ref, tiny)
    with pytest.raises(RuntimeError, match="set_image"):
        next(bot.chat_stream("Describe this image."))


def test_an_interrupted_turn_drops_the_cache_and_leaves_no_trace(ref, tiny, image):
    class Stop(Exception):
        pass

    def stop(_piece):
        raise Stop

    bot = _bot(ref, tiny, max_new_tokens=6)
    bot.set_image(image)
    first = bot.chat(QUESTIONS[0])
    with pytest.raises(Stop):
        bot.chat(QUESTIONS[1], on_text=stop)
    assert bot.history == [(QUESTIONS[0], first)] and bot.cached_tokens() == 0
    again = bot.chat(QUESTIONS[1])
    fresh = _bot(ref, tiny, max_new_tokens=6, reuse_cache=False)
    fresh.set_image(image)
    fresh.chat(QUESTIONS[0])
    assert again == fresh.chat(QUESTIONS[1])


def test_bad_input_messages(ref, tiny, image):
    bot = _bot(ref, tiny)
    bot.set_image(image)
    with pytest.raises(ValueError, match="marks the image"):
        bot.chat("What is <image> here?")
    with pytest.raises(TypeError, match="unknown generation option"):
        bot.chat("Describe this image.", max_tokens=3)
    with pytest.raises(ValueError, match="top_p"):
        bot.chat("Describe this image.", do_sample=True, top_p=1.5)
    with pytest.raises(ValueError, match="more than the model's context"):
        _bot(ref, tiny, max_context=10**6)
