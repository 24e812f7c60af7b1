"""A Llama/Mistral-kind tokenizer for the toy chat models (LLaVA, LLaVA-NeXT).

Like the real ones it is a SentencePiece-style BPE (``▁`` marks a word start) with byte
fallback: ids 3..258 are the 256 byte tokens ``<0x00>``..``<0xFF>``, so any text (unicode,
emoji) encodes without errors. The merges are trained with the ``tokenizers`` library on
ShapesWorld text, so the course's sentences take about one token per word.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AddedToken, LlamaTokenizer

from .. import shapesworld as sw

SPECIAL = ("<unk>", "<s>", "</s>")
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))


def case_variants(text: str) -> list[str]:
    """``text`` as typed in lower case, with a capital letter, in capitals and in title case."""
    return [text.lower(), text[:1].upper() + text[1:], text.upper(), text.title()]


def training_texts(extra: Iterable[str] = ()) -> list[str]:
    """ShapesWorld text in every capitalisation, plus ``extra`` (chat template pieces)."""
    texts: list[str] = []
    for text in sw.text_corpus(n_scenes=200):
        texts += case_variants(text)
    return texts + list(extra)


def build_llama_tokenizer(
    extra_texts: Iterable[str] = (),
    *,
    merges_budget: int = 700,
    added_special: tuple[str, ...] = ("<image>", "<pad>"),
) -> LlamaTokenizer:
    """Train BPE merges on ShapesWorld text and wrap them in a ``LlamaTokenizer``.

    ``added_special`` tokens get the ids right after the vocabulary (as ``<image>`` and
    ``<pad>`` do in ``llava-hf`` checkpoints); the last one becomes the padding token.
    """
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=merges_budget, special_tokens=list(SPECIAL), show_progress=False)
    trainer_tok.train_from_iterator(training_texts(extra_texts), trainer=trainer)
    learned = trainer_tok.get_vocab()
    merges = [tuple(m) for m in trainer_tok.model.get_merges()] if hasattr(trainer_tok.model, "get_merges") else None
    if merges is None:
        import json

        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(trainer_tok.to_str())["model"]["merges"]]

    # Llama layout: specials, then the 256 byte tokens, then learned pieces in training order.
    vocab: dict[str, int] = {}
    for token in (*SPECIAL, *BYTE_TOKENS):
        vocab[token] = len(vocab)
    for token, _ in sorted(learned.items(), key=lambda kv: kv[1]):
        if token not in vocab:
            vocab[token] = len(vocab)

    # Left padding, as llava-hf checkpoints: batched generation continues every row at its end.
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False, padding_side="left")
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in added_special]}
    )
    if added_special:
        tokenizer.pad_token = added_special[-1]
    return tokenizer
