"""quiet_notebook(): known harmless noise goes, everything else still shows."""

from __future__ import annotations

import logging
import os
import warnings

import pytest
import transformers
from huggingface_hub import utils as hub_utils

from vlm_course import quiet
from vlm_course.quiet import KNOWN_NOISE, quiet_notebook

BNB_KERNELS = (
    "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
    "`pip install kernels` and the kernels >= 0.11.1"
)
SIGLIP_BOS = (
    "Model config: bos_token_id must be `None` or an integer within the vocabulary (between 0 and 99), "
    "got 49406. This may result in unexpected behavior."
)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def collect(monkeypatch):
    """Undo quiet_notebook() after each test (verbosity, progress bars, logger filters, environment),
    and give a function that collects what one logger lets through."""
    monkeypatch.delenv(quiet.TOKENIZERS_ENV, raising=False)
    verbosity = transformers.utils.logging.get_verbosity()
    tf_bars = transformers.utils.logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    touched: dict[str, tuple[list, list, int]] = {}

    def remember(name: str) -> logging.Logger:
        logger = logging.getLogger(name)
        touched.setdefault(name, (list(logger.filters), logger.handlers[:], logger.level))
        return logger

    for noise in KNOWN_NOISE:
        remember(noise.logger)

    def make(name: str, level: int = logging.DEBUG) -> Collect:
        handler = Collect()
        logger = remember(name)
        logger.addHandler(handler)
        logger.setLevel(level)  # DEBUG: test the filters themselves, whatever the library verbosity
        return handler

    yield make
    transformers.utils.logging.set_verbosity(verbosity)
    (transformers.utils.logging.enable_progress_bar if tf_bars else transformers.utils.logging.disable_progress_bar)()
    (hub_utils.disable_progress_bars if hub_bars_off else hub_utils.enable_progress_bars)()
    for name, (filters, handlers, level) in touched.items():
        logger = logging.getLogger(name)
        logger.filters[:] = filters
        logger.handlers[:] = handlers
        logger.setLevel(level)


def test_known_harmless_messages_are_dropped_and_others_kept(collect):
    bnb = collect("bitsandbytes.backends.cpu.ops")
    cfg = collect("transformers.configuration_utils")
    quiet_notebook()
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning(BNB_KERNELS, "No module named 'kernels'")
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Something else went wrong in gemm_4bit")
    logging.getLogger("transformers.configuration_utils").warning(SIGLIP_BOS)
    logging.getLogger("transformers.configuration_utils").warning("Model config: pad_token_id is odd")
    logging.getLogger("transformers.configuration_utils").error("a real configuration error")
    assert bnb.messages == ["Something else went wrong in gemm_4bit"]
    assert cfg.messages == ["Model config: pad_token_id is odd", "a real configuration error"]


def test_messages_show_without_quiet(collect):
    bnb = collect("bitsandbytes.backends.cpu.ops")
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning(BNB_KERNELS, "No module named 'kernels'")
    assert len(bnb.messages) == 1 and "pip install kernels" in bnb.messages[0]


def test_library_settings(collect):
    quiet_notebook()
    assert transformers.utils.logging.get_verbosity() == logging.ERROR
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert hub_utils.are_progress_bars_disabled()
    assert os.environ[quiet.TOKENIZERS_ENV] == "false"


def test_a_users_tokenizers_setting_is_kept(collect, monkeypatch):
    monkeypatch.setenv(quiet.TOKENIZERS_ENV, "true")
    quiet_notebook()
    assert os.environ[quiet.TOKENIZERS_ENV] == "true"


def test_transformers_errors_still_show(collect):
    handler = collect("transformers.modeling_utils", logging.NOTSET)  # follow the library verbosity
    quiet_notebook()
    transformers.utils.logging.get_logger("transformers.modeling_utils").warning("advice")
    transformers.utils.logging.get_logger("transformers.modeling_utils").error("broken checkpoint")
    assert handler.messages == ["broken checkpoint"]


def test_python_warnings_and_exceptions_still_show(collect):
    quiet_notebook()
    with pytest.warns(UserWarning, match="an unrelated warning"):
        warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
    with pytest.warns(FutureWarning, match="deprecated"):
        warnings.warn("this argument is deprecated", FutureWarning, stacklevel=1)
    with pytest.raises(ValueError, match="not a ShapesWorld question"):
        from vlm_course import shapesworld as sw

        sw.answer(sw.sample_scene(0), "what is the meaning of life?")


def test_idempotent(collect):
    before = list(warnings.filters)
    quiet_notebook()
    once = {n.logger: list(logging.getLogger(n.logger).filters) for n in KNOWN_NOISE}
    quiet_notebook()
    quiet_notebook()
    for name, filters in once.items():
        now = logging.getLogger(name).filters
        assert len(now) == len(filters)
        assert sum(isinstance(f, quiet._NoiseFilter) for f in now) == 1
    assert warnings.filters == before


def test_sets_a_korean_font_for_plain_matplotlib(collect):
    import matplotlib

    from vlm_course.display import hangul_font

    with matplotlib.rc_context():
        quiet_notebook()
        assert hangul_font() in matplotlib.rcParams["font.family"]
