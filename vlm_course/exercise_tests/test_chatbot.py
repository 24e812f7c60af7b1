"""Exercise 2 (multimodal chatbot): gradeable behaviour checks.

Runs against ``solutions/chatbot.py`` by default; ``--submission exercises`` (or
``VLM_COURSE_SUBMISSION``) tests a learner's file instead. The submission is reached only
through the ``chatbot_cls`` fixture. Images are ShapesWorld scenes; the model is the toy LLaVA
under the toy profile. Expected replies and prompt lengths come from an independent oracle that
renders the whole conversation with the processor's chat template and generates greedily
without any cache.

Each test runs on both backends of the chatbot: ``local`` (the model loaded in the chatbot) and
``server`` (``MultimodalChatbot(..., server=URL)`` talking to a real ``transformers serve`` with the
same toy LLaVA on a loopback port). Key/value-cache reuse is the local backend's alone. The server
backend is left out where no server can be reached or waited for: under ``vlm-course grade`` (the
sandbox has no network) and ``vlm-course check`` (kept short), or with ``VLM_COURSE_CHATBOT_BACKENDS=local``.
"""

from __future__ import annotations

import itertools
import os

import pytest
import torch

from vlm_course import shapesworld as sw
from vlm_course.images import load_image
from vlm_course.profiles import resolve
from vlm_course.served import SERVER_ENV
from vlm_course.toybuild.data import eval_scenes

MODEL = "llava-hf/llava-1.5-7b-hf"
N_SCENES = 6
N_ORACLE = N_SCENES  # scenes whose replies are checked against the oracle (the model's own greedy reply)
STAT_KEYS = (
    "turn", "prompt_tokens", "reused_tokens", "tokens_prefilled", "new_tokens", "context_tokens",
    "dropped_turns", "time_to_first_token_s", "total_s", "tokens_per_s",
)
CONVERSATION = (
    "Describe this image.",
    "How many shapes are there?",
    "Is there a red circle?",
    "how many triangles are there",
    "What is shown in this image?",
    "Is there a square?",
)


BACKENDS_ENV = "VLM_COURSE_CHATBOT_BACKENDS"
LOCAL_ONLY_ENV = ("VLM_COURSE_GRADING_WORKER", "VLM_COURSE_CHECK_OUT")  # grading sandbox, learner self-check
LOCAL_ONLY_TESTS = {"test_each_turn_prefills_only_its_new_tokens"}  # cache reuse happens in the chatbot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def backends() -> list[str]:
    """The backends to test: ``local`` and ``server`` unless the environment rules the server out."""
    if any(os.environ.get(name) for name in LOCAL_ONLY_ENV):
        return ["local"]
    wanted = [b.strip() for b in os.environ.get(BACKENDS_ENV, "local,server").split(",") if b.strip()]
    return [b for b in ("local", "server") if b in wanted] or ["local"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = ["local"] if metafunc.function.__name__ in LOCAL_ONLY_TESTS else backends()
        metafunc.parametrize("backend", chosen, scope="module")


@pytest.fixture(scope="session")
def chatbot_cls(submission):
    """``MultimodalChatbot`` from the submission's ``chatbot.py``: the one way tests reach it."""
    return submission.attribute("chatbot", "MultimodalChatbot")


@pytest.fixture(scope="module")
def scenes() -> list[sw.Scene]:
    return eval_scenes(N_SCENES, offset=17)


@pytest.fixture(scope="module")
def images(scenes, tmp_path_factory) -> list[str]:
    """The scenes as PNG files: tests hand the chatbot paths (plain strings), never Python objects."""
    folder = tmp_path_factory.mktemp("chatbot_scenes")
    paths = []
    for i, scene in enumerate(scenes):
        path = folder / f"scene_{i}.png"
        scene.render().save(path)
        paths.append(str(path))
    return paths


def _history(bot) -> list[tuple[str, str]]:
    return [tuple(turn) for turn in bot.history]


class Oracle:
    """Greedy replies computed straight from the model: the whole conversation rendered, no cache."""

    def __init__(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        source = resolve(MODEL, verbose=False)
        self.processor = AutoProcessor.from_pretrained(source)
        self.model = AutoModelForImageTextToText.from_pretrained(source).eval()

    @staticmethod
    def messages(turns, message: str) -> list[dict]:
        out: list[dict] = []
        for i, (q, a) in enumerate(turns):
            out.append({"role": "user", "content": ([{"type": "image"}] if i == 0 else []) + [{"type": "text", "text": q}]})
            out.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
        out.append({"role": "user", "content": ([] if turns else [{"type": "image"}]) + [{"type": "text", "text": message}]})
        return out

    def inputs(self, image, turns, message: str):
        text = self.processor.apply_chat_template(self.messages(turns, message), add_generation_prompt=True)
        return self.processor(images=[load_image(image)], text=[text], return_tensors="pt")

    def prompt_tokens(self, image, turns, message: str) -> int:
        return int(self.inputs(image, turns, message)["input_ids"].shape[1])

    def reply(self, image, turns, message: str, max_new_tokens: int = 64) -> str:
        inputs = self.inputs(image, turns, message)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return self.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle()


@pytest.fixture(scope="module")
def make_bot(chatbot_cls, backend):
    """``make_bot(**options)`` -> a chatbot on this module's backend (``local`` ignores $VLM_COURSE_SERVER)."""
    server: dict = {}
    if backend == "server":
        from vlm_course.serve import shared_server

        server["server"] = shared_server(resolve(MODEL, profile="toy", verbose=False), timeout=240).url

    def make(**options):
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv(SERVER_ENV, raising=False)
            return chatbot_cls(MODEL, **server, **options)

    return make


@pytest.fixture(scope="module")
def conversations(make_bot, images):
    """The CONVERSATION about the first image, with and without cache reuse (built once, lazily)."""
    done: dict[bool, tuple] = {}

    def get(reuse: bool):
        if reuse not in done:
            bot = make_bot(reuse_cache=reuse)
            bot.set_image(images[0])
            replies = [bot.chat(q) for q in CONVERSATION]
            done[reuse] = (replies, [dict(s) for s in bot.stats], _history(bot))
        return done[reuse]

    return get


def _stats(bot) -> dict:
    stats = bot.last_stats
    assert isinstance(stats, dict), f"last_stats must be a dict after a turn, got {type(stats).__name__}"
    missing = [k for k in STAT_KEYS if k not in stats]
    assert not missing, f"last_stats lacks the key(s) {missing}"
    return stats


def _right(scene: sw.Scene, question: str, reply: str) -> bool:
    if sw.normalize_question(question) in {sw.normalize_question(p) for p in sw.DESCRIBE_PROMPTS}:
        return reply == sw.describe_reply(scene)
    return sw.find_answer_word(reply, sw.answer_kind(question)) == sw.answer(scene, question)


# ---- one turn ------------------------------------------------------------------------------------


@pytest.mark.points(2, hint="set_image와 chat을 완성하세요: 채팅 템플릿(첫 사용자 메시지에 이미지, add_generation_prompt=True)과 greedy 디코딩")
def test_describes_shapesworld_scenes(make_bot, oracle, scenes, images):
    bot = make_bot()
    replies = []
    for i, image in enumerate(images):
        bot.set_image(image)
        reply = bot.chat("Describe this image.")
        assert isinstance(reply, str), f"chat must return a str, got {type(reply).__name__}"
        if i < N_ORACLE:
            assert reply == oracle.reply(image, [], "Describe this image."), (
                "the reply differs from the model's own greedy reply to the chat-template prompt: check the "
                "messages (image in the first user message), add_generation_prompt=True and greedy decoding"
            )
        replies.append(reply)
    # Every reply already equals the model's own; this only confirms the scenes are being described
    # (the toy model's accuracy itself is tested in tests/toy, not in a learner's grade).
    right = [r == sw.describe_reply(s) for r, s in zip(replies, scenes, strict=True)]
    assert sum(right) >= N_SCENES // 2, f"descriptions {replies} vs expected {[sw.describe_reply(s) for s in scenes]}"


@pytest.mark.points(2, hint="질문마다 채팅 템플릿으로 프롬프트를 만들고 greedy로 생성한 답을 돌려주세요")
def test_answers_count_and_colour_questions(make_bot, oracle, scenes, images):
    bot = make_bot()
    asked, right = [], []
    for i, (scene, image) in enumerate(zip(scenes, images, strict=True)):
        bot.set_image(image)
        unique = [o.shape for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
        second = f"What color is the {unique[0]}?" if unique else f"How many {scene.objects[0].shape}s are there?"
        for question in ("How many shapes are there?", second):
            bot.clear_history()
            reply = bot.chat(question)
            if i < N_ORACLE:
                assert reply == oracle.reply(image, [], question), f"{question!r}: reply differs from the model's own greedy reply"
            asked.append((question, reply, sw.answer(scene, question)))
            right.append(_right(scene, question, reply))
    assert sum(right) >= len(right) // 2, f"(question, reply, answer): {asked}"


# ---- the conversation ------------------------------------------------------------------------------


@pytest.mark.points(2, hint="두 번째 턴의 프롬프트에는 첫 턴의 (질문, 답)이 들어가야 합니다: history에 튜플로 쌓으세요")
def test_history_is_kept_turn_two_sees_turn_one(make_bot, oracle, images):
    bot = make_bot()
    bot.set_image(images[1])
    q1, q2 = "Describe this image.", "How many shapes are there?"
    a1 = bot.chat(q1)
    first = dict(_stats(bot))
    a2 = bot.chat(q2)
    second = _stats(bot)
    assert _history(bot) == [(q1, a1), (q2, a2)], f"history must list (message, reply) tuples, got {bot.history!r}"
    assert first["prompt_tokens"] == oracle.prompt_tokens(images[1], [], q1), (
        "turn 1's prompt_tokens must count every token of the prompt, the image tokens included"
    )
    want = oracle.prompt_tokens(images[1], [(q1, a1)], q2)
    assert second["prompt_tokens"] == want, (
        f"turn 2's prompt must hold turn 1 and the new message ({want} tokens), got {second['prompt_tokens']}"
    )
    assert a2 == oracle.reply(images[1], [(q1, a1)], q2), "turn 2's reply differs from the model's reply to the whole conversation"


@pytest.mark.points(1, hint="clear_history는 대화와 캐시만 지우고 이미지는 남겨 둡니다")
def test_clear_history_keeps_the_image_and_forgets_the_turns(make_bot, oracle, scenes, images):
    bot = make_bot()
    bot.set_image(images[2])
    bot.chat("Is there a red circle?")
    bot.chat("How many shapes are there?")
    bot.clear_history()
    assert _history(bot) == [], "clear_history must empty the history"
    reply = bot.chat("Describe this image.")
    stats = _stats(bot)
    assert reply == oracle.reply(images[2], [], "Describe this image."), "after clear_history the image must still be there"
    assert stats["prompt_tokens"] == oracle.prompt_tokens(images[2], [], "Describe this image."), (
        "after clear_history the prompt must hold only the image and the new message"
    )
    assert stats["reused_tokens"] == 0, "clear_history must drop the key/value cache"
    assert _history(bot) == [("Describe this image.", reply)]


@pytest.mark.points(1, hint="set_image는 새 대화를 시작합니다: history, 통계, 캐시를 모두 비우세요")
def test_set_image_starts_a_new_conversation(make_bot, oracle, scenes, images):
    bot = make_bot()
    bot.set_image(images[3])
    bot.chat("Describe this image.")
    bot.set_image(images[4])
    assert _history(bot) == [], "set_image must start a new conversation (empty history)"
    reply = bot.chat("Describe this image.")
    stats = _stats(bot)
    assert reply == oracle.reply(images[4], [], "Describe this image."), "the reply must be about the new image"
    assert stats["reused_tokens"] == 0, "set_image must drop the key/value cache"
    assert stats["turn"] == 1, "statistics start again with a new image"


# ---- key/value cache reuse (challenge) --------------------------------------------------------------


@pytest.mark.points(3, hint="(도전) 캐시를 재사용해도 greedy 답은 캐시 없이 만든 답과 똑같아야 합니다")
def test_greedy_replies_are_identical_with_and_without_cache_reuse(conversations, oracle, images):
    with_reuse, _, history = conversations(True)
    without, _, _ = conversations(False)
    assert with_reuse == without, f"with reuse: {with_reuse}\nwithout: {without}"
    turns: list[tuple[str, str]] = []
    for question, reply in zip(CONVERSATION, with_reuse, strict=True):
        assert reply == oracle.reply(images[0], turns, question), f"turn {len(turns) + 1} ({question!r}) differs from the oracle"
        turns.append((question, reply))
    assert list(history) == turns


@pytest.mark.points(3, hint="(도전) 이전 턴의 key/value 캐시를 재사용해 새 토큰만 prefill하세요")
def test_each_turn_prefills_only_its_new_tokens(conversations):
    _, stats, _ = conversations(True)
    _, plain, _ = conversations(False)
    for s in stats + plain:
        assert s["tokens_prefilled"] + s["reused_tokens"] == s["prompt_tokens"], f"prefilled + reused != prompt: {s}"
    for s in plain:
        assert s["reused_tokens"] == 0 and s["tokens_prefilled"] == s["prompt_tokens"], f"reuse_cache=False: {s}"
    assert stats[0]["reused_tokens"] == 0
    for before, now in itertools.pairwise(stats):
        # the cache holds the previous prompt and every reply token but the last one (never fed back)
        new = now["prompt_tokens"] - (before["prompt_tokens"] + before["new_tokens"] - 1)
        assert now["tokens_prefilled"] <= new, (
            f"turn {now['turn']} prefilled {now['tokens_prefilled']} tokens, but only {new} are new: reuse the "
            f"key/value cache of the previous turns (reused {now['reused_tokens']} of {now['prompt_tokens']})"
        )
        assert now["reused_tokens"] >= before["prompt_tokens"], f"turn {now['turn']} must reuse the whole previous prompt"


# ---- context limit ---------------------------------------------------------------------------------


@pytest.mark.points(2, hint="max_context를 넘지 않게 오래된 턴부터 프롬프트에서 빼세요(이미지와 새 메시지는 항상 남김)")
def test_thirty_turns_stay_within_the_context(make_bot, oracle, images):
    limit = 160
    bot = make_bot(max_context=limit, max_new_tokens=16)
    bot.set_image(images[5])
    cycle = ["How many shapes are there?", "Is there a red circle?", "Is there a square?", "how many circles are there"]
    # the model's own answer word to each question about this image, asked without any history
    expected = {q: sw.find_answer_word(oracle.reply(images[5], [], q), sw.answer_kind(q)) for q in cycle}
    agree = []
    for i in range(29):
        question = cycle[i % len(cycle)]
        reply = bot.chat(question)
        agree.append(sw.find_answer_word(reply, sw.answer_kind(question)) == expected[question])
        stats = _stats(bot)
        assert stats["context_tokens"] <= limit, f"turn {i + 1} used {stats['context_tokens']} tokens > max_context={limit}"
    reply = bot.chat("Describe this image.")
    assert _stats(bot)["context_tokens"] <= limit
    assert _stats(bot)["prompt_tokens"] >= oracle.prompt_tokens(images[5], [], "Describe this image."), (
        "the prompt must still hold the image and the newest message"
    )
    assert len(bot.history) == 30, "history lists every turn, also those dropped from the prompt"
    assert sum(s["dropped_turns"] for s in bot.stats) > 0, "30 turns cannot fit in 160 tokens: old turns must be dropped"
    assert reply.startswith("The image shows"), f"turn 30 should describe the image, got {reply!r}"
    # answers depend on the image: they keep agreeing with the model's own answers only if the image stays
    assert sum(agree) >= 25, f"answers drifted from the model's own as the conversation grew: {agree} (expected {expected})"


# ---- options, statistics and errors ----------------------------------------------------------------


@pytest.mark.points(1, hint="chat(message, **options)의 max_new_tokens, do_sample, temperature를 generate에 넘기세요")
def test_generation_options(make_bot, oracle, images):
    bot = make_bot()
    bot.set_image(images[0])
    full = oracle.reply(images[0], [], "Describe this image.")
    short = bot.chat("Describe this image.", max_new_tokens=2)
    assert _stats(bot)["new_tokens"] <= 2, "max_new_tokens=2 must stop after 2 tokens"
    assert full.startswith(short) and len(short) < len(full), f"{short!r} should be the start of {full!r}"
    torch.manual_seed(0)
    sampled = []
    for _ in range(4):
        bot.clear_history()
        sampled.append(bot.chat("Describe this image.", do_sample=True, temperature=5.0, max_new_tokens=8))
    assert any(s != full[: len(s)] for s in sampled), f"do_sample=True with temperature=5 should not be greedy: {sampled}"


@pytest.mark.points(1, hint="last_stats의 값들을 정수로, context_tokens = prompt_tokens + new_tokens가 되게 기록하세요")
def test_turn_statistics_are_consistent(conversations):
    _, stats, _ = conversations(True)
    for i, s in enumerate(stats, start=1):
        assert s["turn"] == i
        for key in ("prompt_tokens", "reused_tokens", "tokens_prefilled", "new_tokens", "context_tokens", "dropped_turns"):
            assert isinstance(s[key], int) and not isinstance(s[key], bool) and s[key] >= 0, f"{key} must be an int >= 0: {s}"
        assert s["context_tokens"] == s["prompt_tokens"] + s["new_tokens"]
        assert 0 < s["time_to_first_token_s"] <= s["total_s"], f"time to first token must lie within the turn: {s}"
        assert s["tokens_per_s"] == pytest.approx(s["new_tokens"] / s["total_s"], rel=1e-6)


@pytest.mark.points(1, hint="set_image 전에 chat을 부르면 'set_image'를 언급하는 RuntimeError를 내세요")
def test_chat_before_set_image_is_a_clear_error(make_bot):
    bot = make_bot()
    with pytest.raises(RuntimeError, match="set_image"):
        bot.chat("Describe this image.")


@pytest.mark.points(1, hint="읽을 수 없는 이미지는 파일 이름이 담긴 ValueError로 알리세요(load_image가 해 줍니다)")
def test_unreadable_image_is_a_clear_error(make_bot, tmp_path):
    bot = make_bot()
    missing = tmp_path / "no_such_image.png"
    with pytest.raises(ValueError, match="no_such_image.png"):
        bot.set_image(str(missing))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        bot.set_image(str(broken))


@pytest.mark.points(1, hint="str이 아닌 메시지는 TypeError, 빈 메시지나 잘못된 옵션은 ValueError; 거절한 메시지는 history에 넣지 마세요")
def test_bad_messages_and_options_are_rejected(make_bot, images):
    bot = make_bot()
    bot.set_image(images[0])
    for bad in (None, 42, ["Describe this image."]):
        with pytest.raises(TypeError):
            bot.chat(bad)
    for empty in ("", "   \n"):
        with pytest.raises(ValueError):
            bot.chat(empty)
    with pytest.raises(ValueError):
        bot.chat("Describe this image.", max_new_tokens=0)
    with pytest.raises(ValueError):
        bot.chat("Describe this image.", do_sample=True, temperature=0.0)
    assert _history(bot) == [], "rejected messages must not enter the history"
