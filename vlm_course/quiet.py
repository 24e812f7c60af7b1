"""Silence the harmless noise libraries print in notebooks, and nothing else.

``quiet_notebook()`` (one call at the top of a lesson; calling it again changes nothing):

* hides the "Loading weights" / download progress bars of transformers and huggingface_hub;
* sets transformers logging to ERROR (its warnings are advice for library developers, e.g. the
  SigLIP config note about bos/eos ids 49406/49407 that real checkpoints print too);
* sets ``TOKENIZERS_PARALLELISM=false`` (unless already set), which stops the tokenizers warning
  about a process forked after parallelism was used;
* drops a few known harmless log lines, matched by logger and message (see ``KNOWN_NOISE``);
* makes a Korean font matplotlib's fallback (``vlm_course.display.use_korean_font``), so plain
  ``plt.title("한국어")`` draws Hangul instead of boxes and "Glyph missing" warnings.

Other warnings (``warnings.warn``), other log records and every exception still show.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

TOKENIZERS_ENV = "TOKENIZERS_PARALLELISM"


@dataclass(frozen=True)
class Noise:
    """A harmless log line: the logger that emits it and a regex its message must match."""

    logger: str
    pattern: str
    why: str


KNOWN_NOISE: tuple[Noise, ...] = (
    Noise(
        "bitsandbytes.backends.cpu.ops",
        r"^Failed to load CPU gemm_4bit_forward from kernels-community: .*pip install kernels",
        "bitsandbytes falls back to its own CPU 4-bit kernel when the optional `kernels` package is missing",
    ),
    Noise(
        "bitsandbytes.autograd._functions",
        r"^MatMul8bitLt: inputs will be cast from .* to float16 during quantization",
        "8-bit matmul converts its inputs to float16 by design; printed for every layer at every step",
    ),
    Noise(
        "transformers.configuration_utils",
        r"^Model config: (bos|eos)_token_id must be `None` or an integer within the vocabulary",
        "SigLIP builds a default text config with CLIP's bos/eos ids while loading; real checkpoints print it too",
    ),
)


class _NoiseFilter(logging.Filter):
    """Drops records whose message matches one of ``patterns``."""

    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        return not any(p.search(message) for p in self.patterns)


def _install_filters() -> None:
    by_logger: dict[str, list[str]] = {}
    for noise in KNOWN_NOISE:
        by_logger.setdefault(noise.logger, []).append(noise.pattern)
    for name, patterns in by_logger.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _NoiseFilter)]:
            logger.removeFilter(old)  # idempotent: one filter per logger, however many calls
        logger.addFilter(_NoiseFilter(patterns))


def quiet_notebook() -> None:
    """Silence progress bars and known harmless messages; see the module docstring."""
    os.environ.setdefault(TOKENIZERS_ENV, "false")
    _install_filters()  # before the imports below: bitsandbytes speaks when it is first imported

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()

    from vlm_course.display import use_korean_font

    use_korean_font()
