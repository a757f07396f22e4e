"""Loss and accuracy curves of a ``History`` as a PNG (needs matplotlib).

>>> # plot_history(hist, "curve.png")
"""

from __future__ import annotations

import os

from graphcomp.errors import GraphcompError
from graphcomp.train.fit import History

_NOT_CURVES = {"time", "step_time"}


def plot_history(history: History, path: str | os.PathLike[str], title: str | None = None) -> None:
    """Write one panel per metric (training and validation together) to ``path``.

    >>> # plot_history(gc.fit(step, data=(X, Y), epochs=5), "curve.png", title="mlp")
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise GraphcompError(
            "--plot needs matplotlib: pip install matplotlib (or 'graphcomp[examples]')"
        ) from None
    metrics = [k for k in history.history if not k.startswith("val_") and k not in _NOT_CURVES]
    if not metrics:
        raise GraphcompError("nothing to plot: the history holds no completed epoch")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = history.history[metric]
        epochs = range(1, len(values) + 1)
        ax.plot(epochs, values, marker="o", markersize=3, label="train")
        validation = history.history.get(f"val_{metric}")
        if validation:
            ax.plot(epochs, validation, marker="o", markersize=3, label="validation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
