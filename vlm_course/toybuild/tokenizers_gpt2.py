"""GPT-2 style byte-level BPE tokenizers for the toy checkpoints (OPT's tokenizer kind).

The vocabulary is trained with the ``tokenizers`` library on ``shapesworld.text_corpus()``
on top of the full 256-symbol byte alphabet, so any text (unicode, emoji, code) tokenizes
without unknown tokens; ShapesWorld words become single tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Tokenizer

from .. import shapesworld as sw

# OPT's special tokens and their ids: <s>=0, <pad>=1, </s>=2, <unk>=3; </s> is both BOS and EOS.
OPT_SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...]) -> Tokenizer:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts`` (special tokens get the first ids)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def opt_tokenizer(vocab_size: int = 511, texts: Iterable[str] | None = None) -> GPT2Tokenizer:
    """An OPT-style ``GPT2Tokenizer``: byte-level BPE, ``</s>`` as BOS and EOS (BOS added in front
    of every text, as OPT does), ``<pad>`` for padding, trained on ShapesWorld text."""
    texts = list(texts) if texts is not None else sw.text_corpus()
    raw = train_byte_level_bpe(texts, vocab_size, OPT_SPECIAL_TOKENS)
    model = raw.model
    vocab = raw.get_vocab()
    # BpeTrainer keeps merges inside the model; read them back through its JSON form.
    import json

    merges = json.loads(raw.to_str())["model"]["merges"]
    del model
    return GPT2Tokenizer(
        vocab=vocab,
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges],
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        add_bos_token=True,
        add_prefix_space=False,
        model_max_length=512,
    )
