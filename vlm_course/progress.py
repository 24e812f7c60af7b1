"""Progress bars that stay readable after a notebook is saved: ``progress_bar(...)`` instead of ``tqdm.auto``.

``tqdm.auto`` draws a widget in Jupyter. A saved or nbconvert-executed notebook keeps only the
widget's text at the moment it was created ("0%| | 0/48"), unless the widget state was saved too,
so every bar in a saved lesson reads 0%. In a notebook ``progress_bar`` draws the bar as one plain
output (text and a small HTML ``<progress>``) that is replaced in place while it runs, so the saved
notebook keeps the last state ("100%| ... | 48/48"). Elsewhere (a terminal, a log file) it is tqdm's
ordinary text bar on stderr. Same arguments as ``tqdm``.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable
from typing import Any

from tqdm.std import tqdm as text_tqdm


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, nbconvert, nbval), False in a terminal or a plain script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookBar(text_tqdm):
    """A tqdm bar shown as one notebook output, replaced in place (an IPython display handle) as it advances."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["file"] = io.StringIO()  # tqdm's own writes (newlines, carriage returns) go nowhere
        kwargs.setdefault("mininterval", 0.5)  # each redraw is a message to the notebook
        kwargs.setdefault("ascii", False)
        self._handle = None
        super().__init__(*args, **kwargs)

    def _bundle(self, text: str) -> dict[str, str]:
        total = self.total
        bar = (f'<progress value="{self.n}" max="{total}"></progress>' if total
               else "<progress></progress>")  # no total: an indeterminate bar
        return {"text/plain": text,
                "text/html": f'<div style="font-family:monospace">{bar} {html.escape(text)}</div>'}

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        from IPython.display import display

        text = self.format_meter(**self.format_dict) if msg is None else msg
        data = self._bundle(text) if text else {"text/plain": ""}  # leave=False clears it at the end
        if self._handle is None:
            self._handle = display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)
        return True


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> text_tqdm:
    """A progress bar over ``iterable`` (or a manual one: ``total=N``, then ``bar.update(k)``).

    Keyword arguments are tqdm's (``desc``, ``total``, ``unit``, ``disable``, ``leave``, ...).
    In a notebook the bar is a plain output kept in the saved file; elsewhere tqdm's text bar.
    """
    cls = NotebookBar if in_notebook() else text_tqdm
    return cls(iterable, **kwargs)
