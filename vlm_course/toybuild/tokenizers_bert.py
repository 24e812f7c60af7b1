"""A small uncased BERT WordPiece tokenizer for the BLIP toys (the real BLIP checkpoints use
``bert-base-uncased`` plus BLIP's ``[DEC]`` (bos) and ``[ENC]`` tokens)."""

from __future__ import annotations

import string
from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizer

from .. import shapesworld as sw

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4, as BERT orders them
BLIP_BOS = "[DEC]"
BLIP_ENC = "[ENC]"
# Texts the BLIP lessons type besides the ShapesWorld corpus (the real model's caption prompt).
BLIP_PROMPTS = ["a photography of", "a picture of", "a photo of", "what colour is the circle?"]


def train_wordpiece_vocab(texts: Iterable[str], vocab_size: int = 400) -> dict[str, int]:
    """Train an uncased WordPiece vocabulary on ``texts``.

    Every printable ASCII character and a ``##`` continuation of every letter and digit is in the
    vocabulary, so any word a learner types splits into pieces; other symbols (emoji, ...) become
    ``[UNK]``. ShapesWorld words end up as whole tokens.
    """
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    alphabet = [c for c in string.printable.strip() if not c.isupper()]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=BERT_SPECIALS, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer)
    vocab = tok.get_vocab()
    ordered = sorted(vocab, key=vocab.get)
    for c in string.ascii_lowercase + string.digits:
        if f"##{c}" not in vocab:
            ordered.append(f"##{c}")
    return {t: i for i, t in enumerate(ordered)}


def build_blip_tokenizer(model_max_length: int = 128) -> BertTokenizer:
    """The toy BLIP tokenizer: BERT WordPiece (uncased) with ``[DEC]`` as bos and ``[ENC]`` as an
    extra special token, appended after the WordPiece vocabulary as in the real checkpoints."""
    vocab = train_wordpiece_vocab(sw.text_corpus() + BLIP_PROMPTS)
    vocab[BLIP_BOS] = len(vocab)
    vocab[BLIP_ENC] = len(vocab)
    return BertTokenizer(
        vocab=vocab,
        do_lower_case=True,
        bos_token=BLIP_BOS,
        extra_special_tokens=[BLIP_ENC],
        model_max_length=model_max_length,
    )
