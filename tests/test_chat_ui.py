"""The notebook chat UI, driven without a browser: handlers and buttons are called directly."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import pytest

from vlm_course import shapesworld as sw
from vlm_course.chat_ui import ChatUI, history_html, stats_line, uploaded_files
from vlm_course.images import load_image
from vlm_course.submission import import_file

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeBot:
    """The exercise-2 interface with canned replies; streams each word through ``on_text``."""

    def __init__(self) -> None:
        self.image = None
        self.history: list[tuple[str, str]] = []
        self.last_stats = None
        self.calls: list[str] = []

    def set_image(self, image) -> None:
        self.image = load_image(image)
        self.history = []
        self.calls.append("set_image")

    def chat(self, message, *, on_text=None):
        if not isinstance(message, str):
            raise TypeError("message must be a str")
        if self.image is None:
            raise RuntimeError("no image yet: call set_image(path) before chat(message)")
        reply = f"You said {message}."
        for word in reply.split(" "):
            if on_text:
                on_text(word + " ")
        self.history.append((message, reply))
        self.last_stats = {"tokens_prefilled": 9, "reused_tokens": 70, "time_to_first_token_s": 0.012,
                           "tokens_per_s": 41.0, "dropped_turns": 0}
        return reply

    def clear_history(self) -> None:
        self.history = []
        self.calls.append("clear_history")


class PlainBot(FakeBot):
    """A learner's bot whose ``chat`` takes no ``on_text``."""

    def chat(self, message):  # noqa: D401 - same contract without streaming
        return super().chat(message)


def _png(scene_seed: int = 3) -> bytes:
    buffer = io.BytesIO()
    sw.sample_scene(scene_seed).render().save(buffer, format="PNG")
    return buffer.getvalue()


def _upload_value(data: bytes, name: str = "scene.png") -> tuple[dict, ...]:
    return ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data), "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)},)


def _streamed(ui: ChatUI) -> str:
    return "".join(o.get("text", "") for o in ui.stream_output.outputs)


def test_upload_handler_sets_the_image_and_shows_a_preview():
    bot = FakeBot()
    ui = ChatUI(bot)
    data = _png()
    ui._on_upload({"new": _upload_value(data)})
    assert bot.calls == ["set_image"]
    assert bot.image.size == (224, 224)
    preview = load_image(bytes(ui.preview.value))
    assert max(preview.size) == 160, "the preview is a 160 px thumbnail"
    assert ui.preview.layout.display is None, "the preview shows once there is an image"
    assert "scene.png" in ui.status.value and "⚠" not in ui.status.value


def test_upload_through_the_widget_value_and_the_old_dict_format():
    bot = FakeBot()
    ui = ChatUI(bot)
    ui.upload.value = _upload_value(_png(), "a.png")  # what the browser does
    assert bot.calls == ["set_image"]
    assert uploaded_files({"b.png": {"metadata": {}, "content": _png()}})[0][0] == "b.png"
    assert uploaded_files(()) == []


def test_unreadable_upload_shows_the_error_and_keeps_the_state():
    bot = FakeBot()
    ui = ChatUI(bot)
    assert ui.load_image(b"not an image at all", "notes.txt") is False
    assert bot.calls == [] and bot.image is None
    assert "⚠" in ui.status.value and "notes.txt" in ui.status.value
    assert ui.preview.value == b"" and ui.preview.layout.display == "none", "no broken-image icon"


def test_send_before_an_image_shows_the_bots_error():
    ui = ChatUI(FakeBot())
    ui.message.value = "Describe this image."
    assert ui.send() is None
    assert "set_image" in ui.status.value and "⚠" in ui.status.value
    assert ui.message.value == "Describe this image.", "the message stays in the box after an error"


def test_empty_message_is_not_sent():
    bot = FakeBot()
    ui = ChatUI(bot)
    ui.load_image(_png())
    ui.message.value = "   "
    ui.send_button.click()
    assert bot.history == [] and "메시지를 입력하세요" in ui.status.value


def test_send_button_streams_the_reply_and_renders_the_history():
    bot = FakeBot()
    ui = ChatUI(bot)
    ui.load_image(_png())
    pieces: list[str] = []
    ui.stream_output.append_stdout = lambda text: pieces.append(text)  # watch the stream as it happens
    ui.message.value = "How many shapes are there?"
    ui.send_button.click()
    assert "".join(pieces).strip() == "You said How many shapes are there?."
    assert len(pieces) == 7, "each streamed piece is appended as it arrives"
    assert bot.history == [("How many shapes are there?", "You said How many shapes are there?.")]
    assert "How many shapes are there?" in ui.history.value and "You said" in ui.history.value
    assert ui.message.value == "", "the message box is emptied after sending"
    assert "prefill 9" in ui.status.value and "캐시 재사용 70" in ui.status.value
    assert not ui.send_button.disabled


def test_stream_output_receives_text_with_a_real_output_widget():
    ui = ChatUI(FakeBot())
    ui.load_image(_png())
    seen = []
    original = ui.stream_output.append_stdout

    def spy(text):
        original(text)
        seen.append(_streamed(ui))

    ui.stream_output.append_stdout = spy
    ui.send("Is there a red circle?")
    assert seen[-1].strip() == "You said Is there a red circle?.", "the Output widget holds the reply while streaming"
    assert _streamed(ui) == "", "after the turn the reply moves to the history"


def test_bots_without_on_text_still_work():
    bot = PlainBot()
    ui = ChatUI(bot)
    ui.load_image(_png())
    assert ui.send("Describe this image.") == "You said Describe this image.."
    assert len(bot.history) == 1


def test_history_is_html_escaped():
    ui = ChatUI(FakeBot())
    ui.load_image(_png())
    ui.send("<script>alert(1)</script>")
    assert "<script>" not in ui.history.value
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ui.history.value
    assert "<script>" not in history_html([("<script>", "<b>x</b>")])


def test_clear_button_forgets_the_turns_but_keeps_the_image():
    bot = FakeBot()
    ui = ChatUI(bot)
    ui.load_image(_png())
    ui.send("Describe this image.")
    ui.clear_button.click()
    assert bot.calls == ["set_image", "clear_history"]
    assert bot.history == [] and bot.image is not None
    assert "아직 대화가 없습니다" in ui.history.value


def test_stats_line():
    assert stats_line(None) == ""
    line = stats_line({"tokens_prefilled": 12, "reused_tokens": 80, "time_to_first_token_s": 0.5,
                       "tokens_per_s": 20.0, "dropped_turns": 2})
    assert line == "prefill 12 토큰 · 캐시 재사용 80 토큰 · 첫 토큰 0.50 s · 20.0 토큰/s · 문맥 한도로 오래된 턴 2개 제외"


def test_with_the_reference_chatbot_on_the_toy_llava():
    module = import_file(ROOT / "solutions" / "chatbot.py")
    bot = module.MultimodalChatbot(max_new_tokens=24)
    ui = ChatUI(bot)
    scene = sw.sample_scene(11)
    buffer = io.BytesIO()
    scene.render().save(buffer, format="PNG")
    ui.upload.value = _upload_value(buffer.getvalue())
    pieces: list[str] = []
    original = ui.stream_output.append_stdout
    ui.stream_output.append_stdout = lambda text: (pieces.append(text), original(text))
    reply = ui.send("Describe this image.")
    assert reply == bot.history[-1][1]
    assert "".join(pieces).strip() == reply, "the streamed pieces add up to the reply"
    assert ui.history.value.count("Describe this image.") == 1
    ui.send("How many shapes are there?")
    assert len(bot.history) == 2 and bot.last_stats["reused_tokens"] > 0
    ui.clear()
    assert bot.history == [] and bot.image is not None


def test_enter_in_the_message_box_sends():
    bot = FakeBot()
    ui = ChatUI(bot)
    ui.load_image(_png())
    ui.message.value = "How many shapes are there?"
    ui.message._handle_custom_msg({"event": "submit"}, [])  # what the browser sends on Enter
    assert bot.history == [("How many shapes are there?", "You said How many shapes are there?.")]
    assert ui.message.value == ""
    ui.message._handle_custom_msg({"event": "focus"}, [])  # other events send nothing
    assert len(bot.history) == 1


def test_a_bad_upload_gets_advice_for_uploads():
    ui = ChatUI(FakeBot())
    ui._on_upload({"new": _upload_value(b"%PDF-1.7 not an image", "slides.pdf")})
    assert ui.status_text == "⚠ slides.pdf: 이미지로 읽을 수 없는 파일입니다. PNG, JPEG, WebP 같은 이미지 파일을 올리세요."
    for wrong in ("<bytes>", "link", "web page", "URL"):
        assert wrong not in ui.status.value
    ui._on_upload({"new": _upload_value(b"", "empty.png")})
    assert ui.status_text.startswith("⚠ empty.png: 이미지로 읽을 수 없는 파일입니다")


def test_a_bad_path_keeps_the_loaders_advice(tmp_path):
    ui = ChatUI(FakeBot())
    assert ui.load_image(str(tmp_path / "missing.png"), "missing.png") is False
    assert "missing.png" in ui.status_text and "이미지로 읽을 수 없는 파일" not in ui.status_text


def test_status_text_is_plain_text():
    ui = ChatUI(FakeBot())
    ui.load_image(_png(), "scene <1>.png")
    assert ui.status_text == "새 이미지 scene <1>.png: 새 대화를 시작합니다."
    assert "<b>" in ui.status.value and "&lt;1&gt;" in ui.status.value
