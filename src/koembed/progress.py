"""Progress bars: tqdm on a terminal, plain lines everywhere else (a leaf: every room may use it).

tqdm redraws its bar with carriage returns. Piped to a file or a CI log, every redraw stays: a bar appears at 0%,
again at each refresh and once more when it closes. Off a terminal koembed's bars (Kiwi, BM25, encoding,
mining, reranking, Qdrant uploads) therefore print one line when they finish, ``Kiwi: 48/48 text [00:00,
114 text/s]``, and for a long job one more line every :data:`PERIOD` seconds, without a bar graph or a
carriage return. In a terminal or a notebook they are tqdm's own.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable
from typing import Any

PERIOD = 30.0  # seconds between the lines of a long job off a terminal
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}, {rate_fmt}]"


def _on_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or a fake stream
        return False


def progress(iterable: Iterable[Any] | None = None, *, desc: str, total: int | None = None, unit: str = "it",
             disable: bool = False, initial: int = 0, file: Any = None) -> Any:
    """A progress bar over ``iterable`` (or one to ``update`` by hand): ``tqdm.auto.tqdm`` where ``file``
    (default stderr) is a terminal or in a notebook, else a :class:`LineProgress`. Usable as tqdm is: iterate it,
    ``with`` it, ``update(n)``, ``close()``."""
    if disable and iterable is not None:
        return iterable  # nothing to show: a bar per one-query search cost ~0.25 ms
    stream = sys.stderr if file is None else file
    kwargs = {"desc": desc, "total": total, "unit": unit, "disable": disable, "initial": initial, "file": stream}
    if _on_terminal(stream) or "ipykernel" in sys.modules:
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    return _line_class()(iterable, **kwargs)


@functools.cache
def _line_class() -> type:
    """The one LineProgress class: tqdm starts a monitor thread per class, so a class made per call leaked a thread
    per bar (a search worker running one BM25 query at a time: one thread per query)."""
    from tqdm import tqdm

    class LineProgress(tqdm):
        """tqdm that writes whole lines: none at the start, one every :data:`PERIOD` seconds, one at the end."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._closing = False
            kwargs.update(mininterval=float(os.environ.get("KOEMBED_PROGRESS_PERIOD", PERIOD)), miniters=1,
                          bar_format=LINE_FORMAT, ascii=True, dynamic_ncols=False)
            super().__init__(*args, **kwargs)

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            if msg == "" or (not self._closing and self.n == self.initial):
                return True  # tqdm clearing its line, or the bar at its start: nothing to say yet
            # At close tqdm itself ends the line with "\n".
            self.fp.write(self.__str__() + ("" if self._closing else "\n"))
            self.fp.flush()
            return True

        def close(self) -> None:
            self._closing = True
            super().close()

    return LineProgress
