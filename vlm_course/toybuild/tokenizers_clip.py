"""Tokenizers for the toy CLIP and SigLIP: the real classes' kinds, trained on ShapesWorld text.

* CLIP: byte-level BPE exactly like OpenAI's (lower-cased, ``</w>`` word ends, all 512 byte
  symbols in the vocabulary, ``<|startoftext|>``/``<|endoftext|>`` last), so any text encodes.
* SigLIP: a SentencePiece unigram model loaded by ``SiglipTokenizer`` (``</s>`` pads and ends,
  ``<unk>`` stands for characters it never saw), 64 tokens like ``google/siglip-base-patch16-224``.
"""

from __future__ import annotations

import io
import json
import string
import tempfile
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTokenizer, SiglipTokenizer

from .. import shapesworld as sw

CLIP_MAX_LENGTH = 77
SIGLIP_MAX_LENGTH = 64
# Letters and digits are always in the vocabularies, so unseen words split into known pieces.
_ALPHABET_LINE = " ".join(string.ascii_lowercase) + " " + " ".join(string.digits)
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def toy_text_corpus() -> list[str]:
    """ShapesWorld's texts plus the alphabet, lower-cased (both tokenizers lower-case)."""
    return [t.lower() for t in sw.text_corpus()] + [_ALPHABET_LINE, "this is a photo of a picture of"]


def build_clip_tokenizer(vocab_limit: int = 1024) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` with OpenAI CLIP's byte-level BPE layout, merges learned on ShapesWorld."""
    byte_symbols = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_order)
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=None))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_limit, min_frequency=2, initial_alphabet=byte_symbols,
        end_of_word_suffix="</w>", show_progress=False,
    )
    bpe.train_from_iterator(toy_text_corpus(), trainer)
    merges = _merges_of(bpe)
    # OpenAI order: 256 byte symbols, the same with "</w>", merge results, then the two specials.
    vocab_list = byte_symbols + [s + "</w>" for s in byte_symbols]
    seen = set(vocab_list)
    for a, b in merges:
        token = a + b
        if token not in seen:
            vocab_list.append(token)
            seen.add(token)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)


def _byte_order(symbol: str) -> int:
    """GPT-2 byte-to-unicode order: printable bytes first, as in OpenAI's vocab.json."""
    code = ord(symbol)
    printable = 33 <= code <= 126 or 161 <= code <= 172 or 174 <= code <= 255
    return code if printable else 1000 + code


def _merges_of(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    model = json.loads(tokenizer.to_str())["model"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def build_siglip_tokenizer(vocab_size: int = 256) -> SiglipTokenizer:
    """A ``SiglipTokenizer`` over a SentencePiece BPE model trained on ShapesWorld text."""
    import sentencepiece as spm

    model = io.BytesIO()
    texts = [_siglip_canonical(t) for t in toy_text_corpus()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, hard_vocab_limit=False,
        model_type="bpe", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", normalization_rule_name="nmt_nfkc",
        minloglevel=2,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spiece.model"
        path.write_bytes(model.getvalue())
        tok = SiglipTokenizer(vocab_file=str(path), model_max_length=SIGLIP_MAX_LENGTH)
        # Load the model bytes now: the temporary file goes away.
        tok.sp_model.LoadFromSerializedProto(model.getvalue())
    return tok


def _siglip_canonical(text: str) -> str:
    """What SiglipTokenizer feeds SentencePiece: lower case, no punctuation, single spaces."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())
