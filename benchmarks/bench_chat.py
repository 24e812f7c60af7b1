"""Benchmark of the exercise-2 reference chatbot (``solutions/chatbot.py``): KV-cache reuse.

One run, two conversations of the same questions about the same image, turn by turn:

* **reuse**: the reference chatbot as is (each turn prefills only its new tokens);
* **re-prefill**: ``reuse_cache=False`` (each turn prefills the whole history again, image included).

It prints, per turn, the prompt length, the tokens new since the cache, the tokens each bot
prefilled and its time to first token (TTFT), and whether the two replies are identical. Goals:
with reuse, turn 10's TTFT at most 1.5x turn 2's, and tokens prefilled equal to the new tokens.

The model is a randomly initialised ``LlavaForConditionalGeneration`` of realistic width (no
download): a Llama language model 512 wide x 8 layers with a 32k vocabulary (about 60M
parameters) behind a small CLIP vision tower at 336 px / patch 14, so the image takes 576
tokens as in LLaVA-1.5. The tokenizer and chat template are the toy LLaVA's. Random weights
would babble arbitrary byte tokens, so replies are limited to whole-word tokens of the toy
vocabulary (a mask added to the logits) and run to a fixed length: every turn does the same work.

Usage::

    python benchmarks/bench_chat.py                  # about 1-3 minutes on a laptop CPU
    python benchmarks/bench_chat.py --turns 12 --reply-tokens 12 --width 768 --layers 12
    python benchmarks/bench_chat.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = (
    "Describe this image.",
    "How many shapes are there?",
    "Is there a red circle?",
    "What color is the square?",
    "How many triangles are there?",
    "Is there a blue square?",
    "What shape is the green object?",
    "Is there a triangle?",
    "How many circles are there?",
    "Is there a yellow triangle?",
    "What is shown in this image?",
    "How many squares are there?",
)


def load_reference():
    """``solutions/chatbot.py`` as a module (the folder is not a package)."""
    from vlm_course.submission import import_file

    return import_file(REPO / "solutions" / "chatbot.py", "bench_reference_chatbot")


def toy_tokenizer():
    """The toy LLaVA's tokenizer (from its checkpoint, else trained afresh in a few seconds)."""
    from transformers import AutoProcessor

    from vlm_course import toy

    try:
        return AutoProcessor.from_pretrained(toy.model_path("llava")).tokenizer
    except (toy.ToyModelMissingError, OSError):
        from vlm_course.toybuild.llava import build_tokenizer

        return build_tokenizer()


def build(width: int, layers: int, vocab: int, seed: int = 0):
    """A random LLaVA of realistic width and its processor (576 image tokens, toy template)."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from vlm_course.toybuild.llava import IMAGE_TOKEN, make_processor

    torch.manual_seed(seed)
    tokenizer = toy_tokenizer()
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                              image_size=336, patch_size=14)
    text = LlamaConfig(vocab_size=max(vocab, len(tokenizer)), hidden_size=width, intermediate_size=width * 3,
                       num_hidden_layers=layers, num_attention_heads=max(1, width // 64), max_position_embeddings=4096,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=576)
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor = make_processor("llava", tokenizer, image_processor, vision)
    return model, processor


def word_tokens(tokenizer) -> list[int]:
    """Ids of whole-word tokens ("▁red") that tokenize back to themselves after a space."""
    keep = []
    for token, idx in tokenizer.get_vocab().items():
        if not token.startswith("▁") or len(token) < 3 or not token[1:].isalpha():
            continue
        if tokenizer(" x " + token[1:], add_special_tokens=False)["input_ids"][-1:] == [idx]:
            keep.append(idx)
    return sorted(keep)


def run(args: argparse.Namespace) -> dict:
    ref = load_reference()
    model, processor = build(args.width, args.layers, args.vocab)
    device = torch.device(args.device) if args.device else torch.device("cpu")
    model.to(device)
    n_params = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    allowed = word_tokens(processor.tokenizer)
    mask = torch.full((model.config.text_config.vocab_size,), float("-inf"), device=device)
    mask[allowed] = 0.0
    model.lm_head.register_forward_hook(lambda _module, _inputs, logits: logits + mask)  # only word tokens

    from vlm_course import shapesworld as sw

    image = sw.sample_scene(7).render()
    common = dict(max_new_tokens=args.reply_tokens)
    bots = {
        "reuse": ref.MultimodalChatbot.from_model(model, processor, reuse_cache=True, **common),
        "re-prefill": ref.MultimodalChatbot.from_model(model, processor, reuse_cache=False, **common),
    }
    for bot in bots.values():
        bot.set_image(image)
    # warm-up: one throwaway turn per bot, so one-time costs do not land on turn 1
    for bot in bots.values():
        bot.chat("Describe this image.", max_new_tokens=2)
        bot.clear_history()

    rows = []
    print(f"LM {args.width} wide x {args.layers} layers, vocab {model.config.text_config.vocab_size}: "
          f"{n_params / 1e6:.1f}M parameters; {len(allowed)} word tokens allowed; device {device}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'turn':>4} {'prompt':>6} {'new':>4} | {'reuse: prefill':>14} {'TTFT ms':>8} | "
          f"{'re-prefill: prefill':>19} {'TTFT ms':>8} | same reply")
    for turn in range(args.turns):
        question = QUESTIONS[turn % len(QUESTIONS)]
        replies = {}
        for name, bot in bots.items():  # interleaved, so both see the same machine load
            replies[name] = bot.chat(question)
        a, b = bots["reuse"].last_stats, bots["re-prefill"].last_stats
        if turn == 0:
            new = a["prompt_tokens"]
        else:
            before = bots["reuse"].stats[-2]
            new = a["prompt_tokens"] - (before["prompt_tokens"] + before["new_tokens"] - 1)
        row = {
            "turn": turn + 1, "prompt_tokens": a["prompt_tokens"], "new_tokens": new,
            "reuse_prefilled": a["tokens_prefilled"], "reuse_ttft_s": a["time_to_first_token_s"],
            "full_prefilled": b["tokens_prefilled"], "full_ttft_s": b["time_to_first_token_s"],
            "same_reply": replies["reuse"] == replies["re-prefill"],
        }
        rows.append(row)
        print(f"{row['turn']:>4} {row['prompt_tokens']:>6} {new:>4} | {row['reuse_prefilled']:>14} "
              f"{1000 * row['reuse_ttft_s']:>8.1f} | {row['full_prefilled']:>19} {1000 * row['full_ttft_s']:>8.1f} | "
              f"{'yes' if row['same_reply'] else 'NO'}")

    summary: dict = {"rows": rows, "lm_parameters": n_params}
    if args.turns >= 10:
        ratio = rows[9]["reuse_ttft_s"] / rows[1]["reuse_ttft_s"]
        speedup = rows[9]["full_ttft_s"] / rows[9]["reuse_ttft_s"]
        summary.update(ttft_ratio_turn10_turn2=ratio, reuse_speedup_turn10=speedup)
        print(f"\nwith reuse, TTFT turn 10 / turn 2 = {ratio:.2f}x (goal <= 1.5x); "
              f"re-prefill / reuse at turn 10 = {speedup:.1f}x")
    exact = all(r["reuse_prefilled"] == r["new_tokens"] for r in rows[1:])
    same = all(r["same_reply"] for r in rows)
    summary.update(prefilled_equals_new=exact, replies_identical=same)
    print(f"prefilled tokens == new tokens on every turn after the first: {'yes' if exact else 'NO'}; "
          f"replies identical with and without reuse: {'yes' if same else 'NO'}")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--reply-tokens", type=int, default=8, help="tokens per reply (fixed length)")
    parser.add_argument("--width", type=int, default=512, help="language-model hidden size")
    parser.add_argument("--layers", type=int, default=8, help="language-model layers")
    parser.add_argument("--vocab", type=int, default=32000, help="language-model vocabulary size")
    parser.add_argument("--device", default=None, help="cpu (default), cuda, mps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    summary = run(args)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
