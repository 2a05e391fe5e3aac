"""Learning-curve plots (PNG) from a run's evaluation history, x-axis = oracle queries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CURVES = (
    ("eval/accuracy", "held-out accuracy"),
    ("eval/win_rate", "win rate vs reference"),
    ("eval/anytime_regret", "anytime regret"),
)


def plot_learning_curves(
    evals: Sequence[dict[str, float]],
    path: str | Path,
    regret_history: tuple[Sequence[int], Sequence[float]] | None = None,
    title: str = "",
) -> Path:
    """Save one panel per available eval metric (plus cumulative regret if given) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    panels = [(key, label) for key, label in CURVES if any(key in e for e in evals)]
    n = len(panels) + (1 if regret_history else 0)
    if n == 0:
        raise ValueError("nothing to plot: no eval metrics and no regret history")
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        points = [(e["misc/queries"], e[key]) for e in evals if key in e]
        ax.plot([q for q, _ in points], [v for _, v in points], marker="o", ms=3)
        ax.set_xlabel("oracle queries")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if regret_history:
        ax = axes[0][-1]
        ax.plot(list(regret_history[0]), list(regret_history[1]), color="tab:red")
        ax.set_xlabel("oracle queries")
        ax.set_title("cumulative regret (E&E)")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
