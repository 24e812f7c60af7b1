"""A small notebook chat UI (ipywidgets) around a chatbot with the exercise-2 interface.

    from vlm_course.chat_ui import ChatUI
    ui = ChatUI(bot)     # bot: set_image(image), chat(message), clear_history(), history
    ui                   # shows: image upload, message box, send / clear buttons, history, streaming

Everything the buttons do is a plain method (``load_image``, ``send``, ``clear``) and every
widget is an attribute, so the UI is tested without a browser by calling the handlers directly.
Enter in the message box sends, like the button. ``status_text`` is the status line as plain text.
When the bot's ``chat`` accepts ``on_text=`` (the reference solution does), the reply streams
into ``stream_output`` as it is generated; otherwise it appears when complete.
"""

from __future__ import annotations

import html
import inspect
import io
import re
from typing import Any

import ipywidgets as widgets
from PIL import Image

from .images import ImageLoadError, ImageTooLargeError, load_image

PREVIEW_SIZE = 160
# Errors a user can cause (no image, empty message, unreadable file); others propagate.
USER_ERRORS = (ValueError, TypeError, RuntimeError, NotImplementedError)
_BUBBLE = (
    '<div style="margin:4px 0;text-align:{align}"><span style="display:inline-block;max-width:80%;'
    'padding:6px 10px;border-radius:10px;background:{bg};white-space:pre-wrap">{who}<br>{text}</span></div>'
)


def _accepts_on_text(chat) -> bool:
    try:
        return "on_text" in inspect.signature(chat).parameters
    except (TypeError, ValueError):
        return False


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of a ``FileUpload`` value (ipywidgets 8 tuple of dicts, or the 7.x dict)."""
    if not value:
        return []
    if isinstance(value, dict):  # ipywidgets 7: {name: {"metadata": {...}, "content": bytes}}
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(str(item.get("name", "upload")), bytes(item["content"])) for item in value]


def upload_error(name: str, exc: ImageLoadError) -> str:
    """What to tell a learner whose uploaded file is not a usable image (no advice about links or paths)."""
    if isinstance(exc, ImageTooLargeError):
        return f"{name}: 이미지가 너무 큽니다. 크기를 줄여서 다시 올리세요."
    return f"{name}: 이미지로 읽을 수 없는 파일입니다. PNG, JPEG, WebP 같은 이미지 파일을 올리세요."


def history_html(history: list[tuple[str, str]]) -> str:
    """The conversation as chat bubbles (user right, assistant left); text is HTML-escaped."""
    if not history:
        return '<div style="color:#888">아직 대화가 없습니다. 이미지를 올리고 질문해 보세요.</div>'
    parts = []
    for message, reply in history:
        parts.append(_BUBBLE.format(align="right", bg="#dbeafe", who="<b>나</b>", text=html.escape(message)))
        parts.append(_BUBBLE.format(align="left", bg="#f3f4f6", who="<b>챗봇</b>", text=html.escape(reply)))
    return "".join(parts)


def stats_line(stats: dict | None) -> str:
    """One line about the latest turn: tokens prefilled / reused, time to first token, speed."""
    if not stats:
        return ""
    parts = [f"prefill {stats.get('tokens_prefilled', '?')} 토큰"]
    if "reused_tokens" in stats:
        parts.append(f"캐시 재사용 {stats['reused_tokens']} 토큰")
    if "time_to_first_token_s" in stats:
        parts.append(f"첫 토큰 {stats['time_to_first_token_s']:.2f} s")
    if "tokens_per_s" in stats:
        parts.append(f"{stats['tokens_per_s']:.1f} 토큰/s")
    if stats.get("dropped_turns"):
        parts.append(f"문맥 한도로 오래된 턴 {stats['dropped_turns']}개 제외")
    return " · ".join(parts)


class ChatUI:
    """Image upload, message box, Send / Clear buttons, history and a streaming output."""

    def __init__(self, bot, *, stream: bool = True) -> None:
        self.bot = bot
        self.stream = stream
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="이미지 올리기")
        # hidden until an image is loaded (an empty image shows as a broken-image icon)
        self.preview = widgets.Image(format="png", width=PREVIEW_SIZE, layout=widgets.Layout(display="none"))
        self.message = widgets.Text(placeholder="이미지에 대해 물어보세요 (예: How many shapes are there?)",
                                    layout=widgets.Layout(width="60%"))
        self.send_button = widgets.Button(description="보내기", button_style="primary", icon="paper-plane")
        self.clear_button = widgets.Button(description="대화 지우기", icon="eraser")
        self.history = widgets.HTML(history_html([]))
        self.stream_output = widgets.Output(layout=widgets.Layout(min_height="1.5em"))
        self.status = widgets.HTML()
        self.status_text = ""
        self.upload.observe(self._on_upload, names="value")
        self.message.on_msg(self._on_message_event)  # the browser sends {"event": "submit"} on Enter
        self.send_button.on_click(self._on_send)
        self.clear_button.on_click(self._on_clear)
        self.widget = widgets.VBox([
            widgets.HBox([self.upload, self.preview]),
            self.history,
            self.stream_output,
            widgets.HBox([self.message, self.send_button, self.clear_button]),
            self.status,
        ])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ---- actions (what the widgets call) ---------------------------------------------------------

    def load_image(self, source: Any, name: str = "image") -> bool:
        """Give the bot a new image (bytes, path or PIL image); True on success, else the error is shown."""
        try:
            image = load_image(source)
        except ImageLoadError as exc:
            uploaded = isinstance(source, (bytes, bytearray, memoryview))
            self._error(upload_error(name, exc) if uploaded else str(exc))
            return False
        try:
            self.bot.set_image(image)
        except USER_ERRORS as exc:
            self._error(f"{name}: {exc}")
            return False
        self.preview.value = preview_png(image)
        self.preview.layout.display = None
        self.stream_output.outputs = ()
        self._refresh()
        self._info(f"새 이미지 <b>{html.escape(name)}</b>: 새 대화를 시작합니다.")
        return True

    def send(self, message: str | None = None) -> str | None:
        """Send ``message`` (default: the message box); return the reply, or None after an error."""
        text = self.message.value if message is None else message
        if not text or not text.strip():
            self._error("메시지를 입력하세요.")
            return None
        self.stream_output.outputs = ()
        self.send_button.disabled = True
        try:
            if self.stream and _accepts_on_text(self.bot.chat):
                reply = self.bot.chat(text, on_text=self.stream_output.append_stdout)
            else:
                reply = self.bot.chat(text)
        except USER_ERRORS as exc:
            self._error(str(exc))
            return None
        finally:
            self.send_button.disabled = False
        self.message.value = ""
        self.stream_output.outputs = ()
        self._refresh()
        self._info(stats_line(getattr(self.bot, "last_stats", None)))
        return reply

    def clear(self) -> None:
        """Forget the conversation (the image stays)."""
        try:
            self.bot.clear_history()
        except USER_ERRORS as exc:
            self._error(str(exc))
            return
        self.stream_output.outputs = ()
        self._refresh()
        self._info("대화를 지웠습니다. 이미지는 그대로입니다.")

    # ---- widget handlers ---------------------------------------------------------------------------

    def _on_upload(self, change: dict) -> None:
        files = uploaded_files(change.get("new"))
        if files:
            name, data = files[-1]
            self.load_image(data, name)

    def _on_send(self, _button=None) -> None:
        self.send()

    def _on_message_event(self, _widget, content: dict, _buffers=None) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            self.send()

    def _on_clear(self, _button=None) -> None:
        self.clear()

    # ---- display helpers ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        self.history.value = history_html(list(getattr(self.bot, "history", [])))

    def _error(self, text: str) -> None:
        self.status_text = f"⚠ {text}"
        self.status.value = f'<span style="color:#b91c1c">{html.escape(self.status_text)}</span>'

    def _info(self, text: str) -> None:
        """``text`` may hold simple HTML (``<b>``); ``status_text`` gets it without the tags."""
        self.status_text = html.unescape(re.sub(r"<[^>]+>", "", text))
        self.status.value = f'<span style="color:#555">{text}</span>'


def preview_png(image: Image.Image, size: int = PREVIEW_SIZE) -> bytes:
    """PNG bytes of a thumbnail of ``image`` (what the preview widget shows)."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    return buffer.getvalue()
