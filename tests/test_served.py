"""The served profile: requests to a real ``transformers serve`` with the toy LLaVA, and every failure
(server down, wrong URL, wrong model, timeout, overload, a reply cut off) as one clear ServerError."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlm_course import served
from vlm_course.profiles import resolve
from vlm_course.serve import free_port
from vlm_course.submission import import_file
from vlm_course.toybuild.data import eval_scenes

ROOT = Path(__file__).resolve().parents[1]
MODEL = "llava-hf/llava-1.5-7b-hf"
QUESTION = "Describe this image."


def _user(text: str, image: bool = False) -> dict:
    return {"role": "user", "content": ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


@pytest.fixture(scope="module")
def scene():
    return eval_scenes(3, offset=17)[0]


@pytest.fixture(scope="module")
def local_llava():
    """The same toy LLaVA loaded in this process: what the server's replies must equal."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = resolve("llava-hf/llava-1.5-7b-hf", profile="toy", verbose=False)
    return AutoModelForImageTextToText.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)


def _local_reply(local_llava, image, messages, max_new_tokens=64) -> tuple[str, int]:
    model, processor = local_llava
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[image], text=[text], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    n = inputs["input_ids"].shape[1]
    return processor.tokenizer.decode(out[0, n:], skip_special_tokens=True).strip(), n


# ---- requests, without a server -----------------------------------------------------------------


def test_image_data_url_shrinks_large_images_and_keeps_small_ones():
    big = Image.new("RGB", (2000, 1000), "red")
    url = served.image_data_url(big)
    assert url.startswith("data:image/png;base64,")
    back = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert back.size == (served.MAX_IMAGE_SIDE, served.MAX_IMAGE_SIDE // 2)
    small = Image.new("RGB", (224, 100), "blue")
    back = Image.open(io.BytesIO(base64.b64decode(served.image_data_url(small).split(",", 1)[1])))
    assert back.size == (224, 100) and back.convert("RGB").getpixel((5, 5)) == (0, 0, 255)


def test_messages_keep_the_course_chat_format_with_the_image_as_a_data_url(scene, monkeypatch):
    monkeypatch.setenv(served.SERVER_ENV, "http://127.0.0.1:9/v1")
    image = scene.render()
    messages = [_user(QUESTION, image=True), _assistant("The image shows a red square."), _user("Is there a circle?")]
    body = served.ServedModel(model="toy").request(messages, image=image, max_new_tokens=12)
    assert body["model"] == "toy" and body["max_tokens"] == 12 and body["temperature"] == 0.0 and body["stream"]
    sent = body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"][0] == {"type": "image_url", "image_url": {"url": served.image_data_url(image)}}
    assert sent[0]["content"][1] == {"type": "text", "text": QUESTION}
    assert sent[1]["content"] == "The image shows a red square."
    assert sent[2]["content"] == [{"type": "text", "text": "Is there a circle?"}]
    short = json.dumps(served.shorten_data_urls(body))
    assert "characters)" in short and len(short) < 1000
    sampled = served.ServedModel(model="toy").request(messages, image=image, do_sample=True, temperature=0.7, top_p=0.9)
    assert sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9
    assert json.loads(sampled["generation_config"]) == {"do_sample": True} and "generation_config" not in body


def test_settings_come_from_the_environment_and_bad_ones_are_explained(monkeypatch):
    monkeypatch.delenv(served.SERVER_ENV, raising=False)
    with pytest.raises(served.ServerError, match=served.SERVER_ENV):
        served.ServedModel()
    monkeypatch.setenv(served.SERVER_ENV, "lab-gpu:8000")
    with pytest.raises(served.ServerError, match="http://HOST:PORT/v1"):
        served.ServedModel()
    monkeypatch.setenv(served.SERVER_ENV, " http://10.0.0.5:8000/v1/ ")
    monkeypatch.setenv(served.KEY_ENV, "secret")
    monkeypatch.setenv(served.MODEL_ENV, "llava-hf/llava-1.5-7b-hf")
    server = served.ServedModel()
    assert (server.url, server.api_key, server.model) == ("http://10.0.0.5:8000/v1", "secret", "llava-hf/llava-1.5-7b-hf")


# ---- a real server -----------------------------------------------------------------------------------


def test_server_answers_like_the_local_model(toy_llava_server, local_llava, scene):
    server = served.ServedModel(toy_llava_server.url)
    assert server.models() == [toy_llava_server.model] and server.model_name() == toy_llava_server.model
    image = scene.render()
    first = [_user(QUESTION, image=True)]
    pieces: list[str] = []
    reply = server.complete(first, image=image, on_text=pieces.append)
    want, prompt_tokens = _local_reply(local_llava, image, first)
    assert reply.text.strip() == want and want.startswith("The image shows")
    assert "".join(pieces) == reply.text and len(pieces) > 1, "the reply streams piece by piece"
    assert reply.prompt_tokens == prompt_tokens and reply.finish_reason == "stop"
    assert 0 < reply.time_to_first_token_s <= reply.total_s
    second = first + [_assistant(reply.text.strip()), _user("How many shapes are there?")]
    again = server.complete(second, image=image)
    want, prompt_tokens = _local_reply(local_llava, image, second)
    assert again.text.strip() == want and again.prompt_tokens == prompt_tokens
    short = server.complete(first, image=image, max_new_tokens=2)
    assert short.finish_reason == "length" and short.completion_tokens == 2


def test_wrong_model_name_and_wrong_path_are_explained(toy_llava_server, scene):
    with pytest.raises(served.ServerError, match="does not serve the model 'llava-hf/no-such-model'.*VLM_COURSE_MODEL"):
        served.ServedModel(toy_llava_server.url, model="llava-hf/no-such-model").check(scene.render())
    root = toy_llava_server.url.removesuffix("/v1")
    with pytest.raises(served.ServerError, match="ending in /v1"):
        served.ServedModel(root, model=toy_llava_server.model).check(scene.render())


@pytest.fixture(scope="module")
def reference_chatbot():
    """``solutions/chatbot.py`` (the reference exercise 2) as a module."""
    return import_file(ROOT / "solutions" / "chatbot.py", "chatbot_reference_served")


def test_reference_chatbot_keeps_its_conversation_across_a_server_restart(toy_llava_server, reference_chatbot,
                                                                          scene, monkeypatch):
    """Stop the server between two turns: the turn fails with a clear error, the conversation so far
    is untouched, and sending the message again once the server is back continues it; the replies
    and prompt sizes are the local model's."""
    monkeypatch.delenv(served.SERVER_ENV, raising=False)
    questions = (QUESTION, "How many shapes are there?", "Is there a red circle?")
    bot = reference_chatbot.MultimodalChatbot(MODEL, server=toy_llava_server.url, max_new_tokens=24)
    bot.server.max_retries = 0
    assert bot.backend == "server" and bot.model is None
    bot.set_image(scene.render())
    first = bot.chat(questions[0])
    toy_llava_server.stop()
    try:
        with pytest.raises(served.ServerError, match="not reachable.*keeps its history"):
            bot.chat(questions[1])
        with pytest.raises(served.ServerError, match="not reachable"):
            list(bot.chat_stream(questions[1]))
        assert bot.history == [(questions[0], first)] and len(bot.stats) == 1
    finally:
        toy_llava_server.start(timeout=240)
    pieces: list[str] = []
    second = bot.chat(questions[1], on_text=pieces.append)
    third = "".join(bot.chat_stream(questions[2])).strip()
    assert "".join(pieces).strip() == second and bot.history[-1] == (questions[2], third)
    local = reference_chatbot.MultimodalChatbot(MODEL, max_new_tokens=24)
    assert local.backend == "local"
    local.set_image(scene.render())
    assert [local.chat(q) for q in questions] == [first, second, third]
    for here, there in zip(local.stats, bot.stats, strict=True):
        assert there["prompt_tokens"] == here["prompt_tokens"] and there["new_tokens"] == here["new_tokens"]
        assert there["reused_tokens"] == 0 and there["tokens_prefilled"] == there["prompt_tokens"]


# ---- failures a real server rarely shows on demand: a stand-in speaking HTTP -------------------------


class _Stub:
    """A loopback HTTP server answering every request with ``respond(handler)``; counts requests."""

    def __init__(self, respond) -> None:
        stub = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                stub.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                respond(self)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _json(handler, status: int, body: dict, headers: dict | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture
def stub():
    made: list[_Stub] = []

    def make(respond) -> _Stub:
        made.append(_Stub(respond))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.mark.parametrize("status", [429, 503])
def test_overload_is_retried_then_explained(stub, status, scene):
    server = stub(lambda h: _json(h, status, {"error": {"message": "too many requests"}}, {"Retry-After": "0"}))
    client = served.ServedModel(server.url, model="m", max_retries=1)
    with pytest.raises(served.ServerError, match=f"overloaded \\(HTTP {status}.*send the message again"):
        client.check(scene.render())
    assert server.requests == 2, "one try and one retry"


def test_refused_key_names_the_variable(stub, scene):
    server = stub(lambda h: _json(h, 401, {"error": {"message": "bad key"}}))
    with pytest.raises(served.ServerError, match=served.KEY_ENV):
        served.ServedModel(server.url, model="m", max_retries=0).check(scene.render())


def test_a_reply_cut_off_is_an_error_not_a_shorter_answer(stub, scene):
    def half_a_reply(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        chunk = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "The image"}, "finish_reason": None}]}
        h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        h.wfile.flush()
        h.close_connection = True

    server = stub(half_a_reply)
    client = served.ServedModel(server.url, model="m", max_retries=0)
    pieces: list[str] = []
    with pytest.raises(served.ServerError, match="cut off after 9 characters.*send the message again"):
        client.complete([_user(QUESTION, image=True)], image=scene.render(), on_text=pieces.append)
    assert pieces == ["The image"] and client.last_reply is None


def test_no_answer_in_time_is_a_timeout(scene):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        with pytest.raises(served.ServerError, match="did not answer within 0.5 s"):
            served.ServedModel(url, model="m", timeout=0.5, max_retries=0).check(scene.render())
    finally:
        silent.close()


def test_server_down_and_unknown_host_are_explained(scene, monkeypatch):
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(served.ServerError, match="not reachable.*vlm-course serve"):
        served.ServedModel(down, model="m", max_retries=0).check(scene.render())

    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(served.ServerError, match="cannot find the host.*VLM_COURSE_SERVER"):
        served.ServedModel("http://lab-gpu.example:8000/v1", model="m", max_retries=0).check(scene.render())
