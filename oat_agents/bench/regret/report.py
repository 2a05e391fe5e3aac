r"""Aggregation, tables, verdicts and plots of the regret benchmark, shared by every testbed.

A *run* (one method, one seed) is a dict with the curves ``eval_queries``, ``anytime_regret``, ``accuracy``
(at each evaluation, the first one before any query), ``regret_queries`` and ``cumulative_regret`` (after every
round), the totals ``queries``, ``model_pairs``, ``seconds``, and the late means of the diagnostics in
:data:`EXPLORER_METRICS` that the method logs. :func:`aggregate` turns ``{method: [run per seed]}`` into mean ±
standard error (sample std / √n over seeds) per method; "queries to passive's final anytime regret" is the first
evaluation after the initial one at which a method's *mean* anytime regret is at most passive online DPO's final
mean value. :func:`orderings` states each of the papers' orderings as "yes" only when the two ±1 s.e. intervals
are apart (overlap = "no ordering").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Explorer diagnostics summarised per run: mean over the last quarter of the rounds that logged them.
EXPLORER_METRICS: tuple[str, ...] = (
    "eval/rm_accuracy",
    "explorer/ts_agreement",
    "explorer/pair_epistemic_var",
    "explorer/same_pair_rate",
    "explorer/distinct_candidates",
    "explorer/model_data_ratio",
    "explorer/apl_entropy",
    "explorer/apl_pool_entropy",
)


def late_means(rows: Sequence[dict[str, Any]], keys: Sequence[str] = EXPLORER_METRICS) -> dict[str, float]:
    """``{key: mean of its last quarter of values}`` over per-round metric dicts (keys never logged left out)."""
    out = {}
    for key in keys:
        values = [r[key] for r in rows if key in r]
        if values:
            out[key] = float(np.mean(values[-max(1, len(values) // 4) :]))
    return out


def explorer_summary(metrics_jsonl: Path) -> dict[str, float]:
    """:func:`late_means` of :data:`EXPLORER_METRICS` from a run's ``metrics.jsonl``."""
    rows = [
        json.loads(line) for line in metrics_jsonl.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    return late_means(rows)


def mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error (sample std / sqrt(n); 0 for one seed) over axis 0."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    se = values.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros(values.shape[1:])
    return values.mean(axis=0), se


def _anytime_auc(per_seed_curve: list[float]) -> float:
    """Mean anytime regret over the evaluations after the initial one: lower means it learned sooner."""
    return float(np.mean(per_seed_curve[1:])) if len(per_seed_curve) > 1 else float(per_seed_curve[0])


def aggregate(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per method: mean ± s.e. curves over seeds, final values and queries-to-match-passive."""
    out: dict[str, dict[str, Any]] = {}
    for method, per_seed in runs.items():
        agg: dict[str, Any] = {
            "eval_queries": per_seed[0]["eval_queries"],
            "regret_queries": per_seed[0]["regret_queries"],
        }
        for key in ("anytime_regret", "accuracy", "cumulative_regret"):
            mean, se = mean_se(np.array([r[key] for r in per_seed]))
            agg[key] = mean.tolist()
            agg[key + "_se"] = se.tolist()
        auc_mean, auc_se = mean_se(np.array([[_anytime_auc(r["anytime_regret"])] for r in per_seed]))
        agg["anytime_auc"], agg["anytime_auc_se"] = float(auc_mean[0]), float(auc_se[0])
        agg["seconds"] = float(np.mean([r["seconds"] for r in per_seed]))
        for key in EXPLORER_METRICS:
            if all(key in r for r in per_seed):
                agg[key] = float(np.mean([r[key] for r in per_seed]))
        agg["model_pairs"] = float(np.mean([r["model_pairs"] for r in per_seed]))
        out[method] = agg
    if "passive" in out:
        # Sample efficiency: the first evaluation (after the initial one) at which a method's mean anytime
        # regret is at most passive online DPO's final value. Undefined when passive did not improve.
        passive = out["passive"]["anytime_regret"]
        target = passive[-1] if passive[-1] < passive[0] else None
        for agg in out.values():
            hits = (
                []
                if target is None
                else [
                    q
                    for q, r in zip(agg["eval_queries"][1:], agg["anytime_regret"][1:])
                    if r <= target + 1e-12
                ]
            )
            agg["queries_to_passive_final"] = hits[0] if hits else None
    return out


def format_table(agg: dict[str, dict[str, Any]], header: str) -> str:
    """Markdown tables under ``header``: final values and sample efficiency (mean ± s.e.; ratios against passive
    online DPO), then the explorer diagnostics of the methods that log them, then the orderings' verdicts."""
    lines = [
        header,
        "",
        "| method | cumulative regret | ratio vs passive | anytime regret (final) | ratio vs passive "
        "| anytime regret (mean over evals) | accuracy (initial → final) "
        "| queries to passive's final anytime regret | model pairs | s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = agg.get("passive")
    for method, a in agg.items():
        cum, cum_se = a["cumulative_regret"][-1], a["cumulative_regret_se"][-1]
        any_, any_se = a["anytime_regret"][-1], a["anytime_regret_se"][-1]
        cum_ratio = f"{cum / base['cumulative_regret'][-1]:.3f}" if base else "-"
        any_ratio = (
            f"{any_ / base['anytime_regret'][-1]:.3f}" if base and base["anytime_regret"][-1] > 0 else "-"
        )
        to_target = a.get("queries_to_passive_final")
        lines.append(
            f"| {method} | {cum:.1f} ± {cum_se:.1f} | {cum_ratio} | {any_:.4f} ± {any_se:.4f} | {any_ratio} | "
            f"{a['anytime_auc']:.4f} ± {a['anytime_auc_se']:.4f} | "
            f"{a['accuracy'][0]:.3f} → {a['accuracy'][-1]:.3f} ± {a['accuracy_se'][-1]:.3f} | "
            f"{'not reached' if to_target is None else to_target} | {a['model_pairs']:.0f} | {a['seconds']:.1f} |"
        )
    diag = [(m, a) for m, a in agg.items() if any(k in a for k in EXPLORER_METRICS)]
    keys = [k for k in EXPLORER_METRICS if any(k in a for _, a in diag)]
    if diag:
        lines += [
            "",
            "Explorer diagnostics (mean of each run's last quarter of rounds, averaged over seeds):",
            "",
            "| method | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        for method, a in diag:
            lines.append(f"| {method} | " + " | ".join(f"{a[k]:.4g}" if k in a else "-" for k in keys) + " |")
    verdicts = orderings(agg)
    if verdicts:
        lines += [
            "",
            "The papers' orderings (arXiv 2411.01493, 2603.17378, 2604.02766), as measured here:",
            "",
        ]
        lines += [f"- {v}" for v in verdicts]
    return "\n".join(lines)


def _lower(a: str, b: str, values: dict[str, tuple[float, float]]) -> str:
    """Verdict on "``a`` is lower than ``b``" for a lower-is-better ``(mean, s.e.)`` summary, with the numbers."""
    (ma, sa), (mb, sb) = values[a], values[b]
    numbers = f"{a} {ma:.4g} ± {sa:.2g} vs {b} {mb:.4g} ± {sb:.2g}"
    if ma + sa < mb - sb:
        return f"yes (±1 s.e. apart): {numbers}"
    if mb + sb < ma - sa:
        return f"no, the reverse holds (±1 s.e. apart): {numbers}"
    # Overlapping intervals say nothing either way: never "yes" on a difference the seeds cannot resolve.
    return f"no ordering (±1 s.e. overlap): {numbers}"


def orderings(agg: dict[str, dict[str, Any]]) -> list[str]:
    """Whether the papers' headline orderings hold in this run (those whose methods were run).

    "Learns faster" compares the mean anytime regret over evaluations (the area under the BAI curve);
    E&E compares final cumulative regret.
    """
    auc = {m: (a["anytime_auc"], a["anytime_auc_se"]) for m, a in agg.items()}
    cum = {m: (a["cumulative_regret"][-1], a["cumulative_regret_se"][-1]) for m, a in agg.items()}
    checks = [
        ("SEA (bai_ts) learns faster than passive online DPO", "bai_ts", "passive", auc),
        ("SEA (bai_ts) learns faster than offline DPO", "bai_ts", "offline", auc),
        ("SEA with model rollout learns faster than passive online DPO", "sea_rollout", "passive", auc),
        ("online (passive) DPO learns faster than offline DPO", "passive", "offline", auc),
        ("E&E-TS has lower cumulative regret than passive online DPO", "ee_ts", "passive", cum),
        ("E&E-TS has lower cumulative regret than BAI-TS", "ee_ts", "bai_ts", cum),
        ("E&E-TS has lower cumulative regret than uncertainty sampling", "ee_ts", "uncertainty", cum),
        ("BAI-TS has lower anytime regret than E&E-TS", "bai_ts", "ee_ts", auc),
        ("IDS learns faster than passive online DPO", "ids", "passive", auc),
        ("IDS has lower cumulative regret than passive online DPO", "ids", "passive", cum),
        ("SEA (bai_ts) learns faster than the random pair of the same candidates", "bai_ts", "random", auc),
        (
            "uncertainty sampling learns faster than the random pair of the same candidates",
            "uncertainty",
            "random",
            auc,
        ),
        ("IDS learns faster than the random pair of the same candidates", "ids", "random", auc),
    ]
    return [f"{claim}: {_lower(a, b, values)}" for claim, a, b, values in checks if a in agg and b in agg]


def plot(
    agg: dict[str, dict[str, Any]],
    path: Path,
    title: str,
    dashed: Callable[[str], bool] = lambda m: m in ("passive", "offline", "random"),
) -> Path:
    """Two panels vs oracle queries: cumulative regret and anytime regret (mean ± s.e. bands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, a in agg.items():
        for ax, xkey, key in (
            (axes[0], "regret_queries", "cumulative_regret"),
            (axes[1], "eval_queries", "anytime_regret"),
        ):
            x, y, se = np.array(a[xkey]), np.array(a[key]), np.array(a[key + "_se"])
            (line,) = ax.plot(x, y, label=method, linestyle="--" if dashed(method) else "-")
            ax.fill_between(x, y - se, y + se, color=line.get_color(), alpha=0.2)
    axes[0].set(title="E&E: cumulative regret", xlabel="oracle queries", ylabel="Σ regret of dueled pairs")
    axes[1].set(
        title="BAI: anytime regret (held-out, greedy)",
        xlabel="oracle queries",
        ylabel="E[r*(x,y*) − r*(x,π(x))]",
    )
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
