"""The run report's figures as PNG bytes: the confusion matrix and the training curves.

matplotlib is imported when a figure is drawn: it takes a while to load, and only commands
that draw need it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _png(size: tuple[float, float], dpi: int, draw: Callable[[Any, Any], None]) -> bytes:
    """`draw(figure, axes)` on a new figure of `size` inches, saved as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=size, layout="constrained")  # room for labels and legends
    try:
        draw(fig, ax)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def confusion_png(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str
) -> bytes:
    """PNG of the confusion matrix: colour and % row-normalised (recall), counts in each cell."""
    cm = np.asarray(confusion, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    size = 1.6 + 1.1 * len(class_names)

    def draw(fig: Any, ax: Any) -> None:
        image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, labels=list(class_names), rotation=30, ha="right")
        ax.set_yticks(ticks, labels=list(class_names))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i, j in np.ndindex(cm.shape):
            colour = "white" if norm[i, j] > 0.5 else "black"
            text = f"{cm[i, j]}\n{100 * norm[i, j]:.1f}%"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)

    return _png((size + 1.2, size), 120, draw)


def draw_curves(fig: Any, ax: Any, curves: dict[str, list[float]], title: str) -> None:
    """The per-epoch series on `ax`: losses on the left axis, other series on a right one, and
    one legend for both below the plot, where it covers no curve."""
    right = None
    for name, values in curves.items():
        epochs = np.arange(1, len(values) + 1)
        if "loss" in name:
            ax.plot(epochs, values, label=name)
        else:
            right = right or ax.twinx()
            right.plot(epochs, values, linestyle="--", label=name, color=f"C{len(right.lines) + 5}")
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if right is not None:
        right.set_ylabel("score")
    ax.set_title(title)
    handles = [*ax.get_lines(), *(right.get_lines() if right else [])]
    fig.legend(
        handles,
        [h.get_label() for h in handles],
        loc="outside lower center",
        ncols=min(len(handles), 4),
        fontsize=8,
        frameon=False,
    )


def curves_png(curves: dict[str, list[float]], title: str) -> bytes:
    """PNG of the per-epoch series (`draw_curves`)."""
    return _png((6.4, 3.8), 110, lambda fig, ax: draw_curves(fig, ax, curves, title))
