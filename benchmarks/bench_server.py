"""Load test of a lab server: a simulated class chatting with one real ``transformers serve``.

``--learners`` learners (default 30) each talk about their own ShapesWorld scene for ``--turns``
turns (default 5), all at once, through the OpenAI chat API as the course's served profile does
(the whole history resent every turn, the image as a data URL, replies streamed). The server is the
toy LLaVA on a free loopback port, started and stopped by this script. Three runs:

* **plain**: ``transformers serve`` as it starts by default (requests take turns);
* **continuous batching**: ``--continuous-batching`` (concurrent requests share forward passes);
* **kill + restart**: plain again, and once ``--kill-after`` of the replies have arrived the server
  is killed (SIGKILL) and started again. A learner whose turn fails waits and sends the same
  message again, as the course's chatbot lets them (its history is kept).

For each run: replies arrived out of those asked, answers right against the ShapesWorld key,
time to first token (p50 / p95, seconds, measured by the learner), completion tokens per second
over the whole run, turns that had to be sent again. Everything is bounded: a request times out
after ``--request-timeout`` s, a failed turn is sent again every ``--retry-wait`` s for at most
``--retry-for`` s, a run stops at ``--deadline`` s. Greedy decoding, so a correct server gives the toy's usual answers.

Usage::

    nice python benchmarks/bench_server.py                       # ~5-10 minutes on 2 CPU cores
    nice python benchmarks/bench_server.py --learners 10 --turns 3 --runs plain
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vlm_course import shapesworld as sw
from vlm_course.profiles import resolve
from vlm_course.serve import ServerProcess
from vlm_course.served import ServedModel, ServerError
from vlm_course.toybuild.data import eval_scenes

MODEL = "llava-hf/llava-1.5-7b-hf"
RUNS = ("plain", "continuous-batching", "kill-restart")


def questions(scene: sw.Scene, turns: int) -> list[str]:
    """A conversation about ``scene``: describe, count, then questions about its own objects."""
    first = scene.objects[0]
    unique = [o.shape for o in scene.objects if sum(p.shape == o.shape for p in scene.objects) == 1]
    asked = [
        "Describe this image.",
        "How many shapes are there?",
        f"Is there a {first.color} {first.shape}?",
        f"What color is the {unique[0]}?" if unique else f"How many {first.shape}s are there?",
        f"How many {first.shape}s are there?",
        "Is there a red circle?",
    ]
    return [asked[i % len(asked)] for i in range(turns)]


def is_right(scene: sw.Scene, question: str, reply: str) -> bool:
    if sw.normalize_question(question) in {sw.normalize_question(p) for p in sw.DESCRIBE_PROMPTS}:
        return reply.strip() == sw.describe_reply(scene)
    return sw.find_answer_word(reply, sw.answer_kind(question)) == sw.answer(scene, question)


@dataclass
class Turn:
    learner: int
    turn: int
    right: bool
    ttft_s: float
    total_s: float
    completion_tokens: int
    attempts: int


@dataclass
class Run:
    name: str
    asked: int
    turns: list[Turn] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    killed_at_reply: int | None = None
    restart_s: float | None = None

    def summary(self) -> dict:
        ttft = sorted(t.ttft_s for t in self.turns)

        def pct(q: float) -> float | None:
            return round(ttft[min(len(ttft) - 1, int(q * len(ttft)))], 2) if ttft else None

        tokens = sum(t.completion_tokens for t in self.turns)
        return {
            "run": self.name,
            "replies": f"{len(self.turns)}/{self.asked}",
            "right_pct": round(100 * sum(t.right for t in self.turns) / max(1, len(self.turns)), 1),
            "ttft_p50_s": round(statistics.median(ttft), 2) if ttft else None,
            "ttft_p95_s": pct(0.95),
            "tokens_per_s": round(tokens / self.wall_s, 1) if self.wall_s else None,
            "wall_s": round(self.wall_s, 1),
            "turns_sent_again": sum(t.attempts > 1 for t in self.turns),
            "killed_at_reply": self.killed_at_reply,
            "restart_s": None if self.restart_s is None else round(self.restart_s, 1),
            "failures": self.failures[:5],
        }


def learner(i: int, scene: sw.Scene, url: str, args, run: Run, lock: threading.Lock, deadline: float,
            on_reply) -> None:
    server = ServedModel(url, timeout=args.request_timeout, max_retries=0)
    image = scene.render()
    messages: list[dict] = []
    for k, question in enumerate(questions(scene, args.turns)):
        content = ([{"type": "image"}] if k == 0 else []) + [{"type": "text", "text": question}]
        messages.append({"role": "user", "content": content})
        give_up = min(deadline, time.monotonic() + args.retry_for)
        attempt = 0
        while True:
            attempt += 1
            try:
                reply = server.complete(messages, image=image, max_new_tokens=args.max_new_tokens)
                break
            except ServerError as exc:
                if time.monotonic() + args.retry_wait > give_up:
                    with lock:
                        run.failures.append(f"learner {i} turn {k + 1} after {attempt} tries: {exc}")
                    return
                time.sleep(args.retry_wait)
        text = reply.text.strip()
        messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
        with lock:
            run.turns.append(Turn(i, k + 1, is_right(scene, question, text), reply.time_to_first_token_s,
                                  reply.total_s, reply.completion_tokens or 0, attempt))
            done = len(run.turns)
        on_reply(done)


def one_run(name: str, checkpoint: str, scenes: list[sw.Scene], args) -> Run:
    extra = ["--continuous-batching"] if name == "continuous-batching" else []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    server = ServerProcess(checkpoint, extra=extra, env=env)
    server.start(timeout=600)
    run = Run(name, asked=len(scenes) * args.turns)
    lock = threading.Lock()
    kill_at = int(args.kill_after * run.asked) if name == "kill-restart" else None
    restarting = threading.Event()
    restarter: list[threading.Thread] = []

    def restart() -> None:
        started = time.perf_counter()
        server.kill()
        server.start(timeout=600)
        run.restart_s = time.perf_counter() - started

    def on_reply(done: int) -> None:
        if kill_at is not None and done >= kill_at and not restarting.is_set():
            restarting.set()
            run.killed_at_reply = done
            restarter.append(threading.Thread(target=restart, daemon=True))
            restarter[0].start()

    try:
        started = time.perf_counter()
        deadline = time.monotonic() + args.deadline
        threads = [threading.Thread(target=learner, args=(i, s, server.url, args, run, lock, deadline, on_reply))
                   for i, s in enumerate(scenes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + args.request_timeout)
        run.wall_s = time.perf_counter() - started
        for t in restarter:
            t.join(600)
    finally:
        server.stop()
    return run


def markdown(rows: list[dict]) -> str:
    lines = ["| run | replies | right | TTFT p50 / p95 (s) | tokens/s | wall (s) | turns sent again |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['replies']} | {r['right_pct']}% | {r['ttft_p50_s']} / {r['ttft_p95_s']} | "
                     f"{r['tokens_per_s']} | {r['wall_s']} | {r['turns_sent_again']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=30)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--kill-after", type=float, default=0.4, help="fraction of replies before the kill")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--retry-for", type=float, default=600.0, help="seconds a failed turn is sent again for")
    parser.add_argument("--retry-wait", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds a run may take")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown run(s) {sorted(unknown)}; choose from {', '.join(RUNS)}")
    checkpoint = resolve(MODEL, profile="toy", verbose=False)
    scenes = eval_scenes(args.learners, offset=500)
    rows = []
    for name in runs:
        print(f"[bench_server] {name}: {args.learners} learners x {args.turns} turns ...", flush=True)
        rows.append(one_run(name, checkpoint, scenes, args).summary())
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["run"] == "plain"), None)
    cb = next((r for r in rows if r["run"] == "continuous-batching"), None)
    print()
    print(markdown(rows))
    if base and cb and base["tokens_per_s"] and base["ttft_p50_s"]:
        print(f"\ncontinuous batching vs plain: {cb['tokens_per_s'] / base['tokens_per_s']:.2f}x tokens/s, "
              f"TTFT p50 {cb['ttft_p50_s'] / base['ttft_p50_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": rows}, indent=2))
    complete = all(r["replies"].split("/")[0] == r["replies"].split("/")[1] for r in rows)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
