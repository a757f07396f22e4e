"""Progress display for ``gc.fit``: a tqdm bar per epoch when tqdm is installed, else a plain one.

Both report to stderr, so a program's stdout stays clean for its own results.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

# A postfix refresh formats strings: do it every few steps, not on every (sub-millisecond) step.
_POSTFIX_EVERY = 16


def format_metrics(metrics: dict[str, float]) -> str:
    """``"loss 0.1234  acc 0.97  time 0.12s"``: how epoch summaries print metrics."""
    return "  ".join(f"{name} {value:.2f}s" if name == "time" else f"{name} {value:.4g}"
                     for name, value in metrics.items())


class PlainProgress:
    """A dependency-free bar: redrawn in place on a terminal, one line per epoch otherwise."""

    def __init__(self, epochs: int, stream: TextIO | None = None) -> None:
        self.epochs = epochs
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0

    def start_epoch(self, epoch: int, total: int) -> None:
        self.epoch, self.total, self.done = epoch, total, 0

    def update(self, loss: float) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.live and (now - self._last_draw > 0.1 or self.done == self.total):
            self._last_draw = now
            self.stream.write(f"\r{self._bar()}  loss {loss:.4g}")
            self.stream.flush()

    def end_epoch(self, metrics: dict[str, float]) -> None:
        end = "\r" if self.live else ""
        self.stream.write(f"{end}{self._bar()}  {format_metrics(metrics)}\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()

    def _bar(self, width: int = 24) -> str:
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        digits = len(str(self.epochs))
        return f"epoch {self.epoch:>{digits}}/{self.epochs} [{bar}] {self.done}/{self.total}"


class TqdmProgress:
    """One tqdm bar per epoch, with the running loss and, at the end, the epoch's metrics."""

    def __init__(self, epochs: int, tqdm: Any) -> None:
        self.epochs = epochs
        self._tqdm = tqdm
        self._bar: Any = None

    def start_epoch(self, epoch: int, total: int) -> None:
        digits = len(str(self.epochs))
        self._bar = self._tqdm(total=total, desc=f"epoch {epoch:>{digits}}/{self.epochs}",
                               unit="step", leave=True, dynamic_ncols=True, file=sys.stderr)

    def update(self, loss: float) -> None:
        self._bar.update(1)
        if self._bar.n % _POSTFIX_EVERY == 0:
            self._bar.set_postfix_str(f"loss {loss:.4g}", refresh=False)

    def end_epoch(self, metrics: dict[str, float]) -> None:
        self._bar.set_postfix_str(format_metrics(metrics), refresh=True)
        self._bar.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class SilentProgress:
    """``progress=False``."""

    def start_epoch(self, epoch: int, total: int) -> None:
        pass

    def update(self, loss: float) -> None:
        pass

    def end_epoch(self, metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(enabled: bool, epochs: int) -> PlainProgress | TqdmProgress | SilentProgress:
    """The best available display: tqdm, else the plain bar; silent when not ``enabled``."""
    if not enabled:
        return SilentProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return PlainProgress(epochs)
    return TqdmProgress(epochs, tqdm)
