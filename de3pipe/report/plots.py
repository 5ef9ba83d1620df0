"""The report's plots: they draw what the statistics computed (each strategy's line, the
gate's levels, the frozen points) and interpolate nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from de3pipe.data.tasks import get_task
from de3pipe.method.strategies import compared_names, registry
from de3pipe.report.per_class import class_names


def plot_task(task: str, lines: dict, points: dict, entry: dict, n_seeds: int, path: Path) -> None:
    """One task's calibrated test curves: ``lines`` (strategy -> speed-ups, metrics ×100, seeds;
    ``comparison.plot_lines``), each run's named-target ``points`` (strategy -> [(speed-up, metric
    ×100)]) as dots, and the full model's and the trivial predictor's levels from the gate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    order = compared_names()
    names = registry()
    bases = list(dict.fromkeys(names[n].rule.name for n in order))
    palette = dict(zip(bases, plt.get_cmap("tab10").colors, strict=False))
    colors = {n: palette[names[n].rule.name] for n in order}  # a study variant takes its rule's colour, dashed
    metric = entry["metric"]
    full = entry["gate"]["full_model"]["value"] * 100
    for name in order:
        if name not in lines:
            continue
        xs, ys, seeds = lines[name]
        ax.plot(xs, ys, color=colors[name], lw=1.5, ls="--" if names[name].is_variant else "-", label=name,
                marker="." if seeds == 1 and len(xs) < 8 else None)
        for speedup, value in points.get(name, []):
            ax.scatter(speedup, value, color=colors[name], edgecolor="black", zorder=3, s=16)
    ax.axhline(full, color="grey", ls="--", lw=1, label="full model")
    trivial = entry["gate"]["trivial"]["value"] * 100
    ax.axhline(trivial, color="black", ls=":", lw=1, label="trivial predictor")
    ax.set_xlabel("achieved test layer speed-up (×)")
    ax.set_ylabel(f"{metric} (test, ×100)")
    learned = "" if entry["gate"]["learned"] else " — NOT LEARNED"
    seeds = f"mean of {n_seeds} seeds" if n_seeds > 1 else "one seed"
    ax.set_title(f"{task}: calibrated test curves{learned}\n(knobs chosen on validation; {seeds}; dots: named targets "
                 "per seed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_prototype_space(arrays: dict[str, dict], path: Path) -> None:
    """Per task (its first seed's projection, ``arrays``) and layer: validation samples in the 2-D
    PCA of the prototype space, coloured by gold label, hollow where the layer's classifier is
    wrong; prototypes as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_exits = max(a["coords"].shape[0] for a in arrays.values())
    fig, axes = plt.subplots(len(arrays), n_exits, figsize=(2.4 * n_exits, 2.4 * len(arrays)), squeeze=False)
    for row, (task, data) in enumerate(arrays.items()):
        labels, pred = data["labels"], data["pred"]
        names = _label_names(task, data)
        colors = class_colors(len(names), plt)
        for m in range(n_exits):
            ax = axes[row, m]
            ax.set_xticks([])
            ax.set_yticks([])
            if m >= data["coords"].shape[0]:
                continue
            xy = data["coords"][m]
            for k in np.unique(labels):
                right = (labels == k) & (pred[:, m] == labels)
                wrong = (labels == k) & (pred[:, m] != labels)
                ax.scatter(*xy[right].T, s=4, color=colors[k], alpha=0.5, linewidths=0)
                ax.scatter(*xy[wrong].T, s=6, facecolors="none", edgecolors=colors[k], alpha=0.6, linewidths=0.5)
            for k, centre in enumerate(data["prototypes"][m]):
                if np.isfinite(centre).all():
                    ax.scatter(*centre, marker="*", s=160, color=colors[k], edgecolor="black", zorder=3)
            ax.set_title(f"{task} layer {m + 1} ({data['explained'][m] * 100:.0f}% var.)", fontsize=7)
        axes[row, 0].legend(
            handles=[plt.Line2D([], [], marker="*", ls="", color=colors[k], label=n) for k, n in enumerate(names)],
            fontsize=6, loc="lower left", ncol=1 + len(names) // 6,
        )
    fig.suptitle("Validation samples in the prototype space (PCA; stars: prototypes; hollow: misclassified)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def class_colors(n_classes: int, plt) -> list:
    """One distinct colour per class: tab10 up to ten classes, tab20 up to twenty, then a hue wheel."""
    if n_classes <= 10:
        return list(plt.get_cmap("tab10").colors[:n_classes])
    if n_classes <= 20:
        return list(plt.get_cmap("tab20").colors[:n_classes])
    return [plt.get_cmap("hsv")(k / n_classes) for k in range(n_classes)]


def _label_names(task: str, data: dict) -> list[str]:
    """The classes' names: the projection's own (a dataset of your own records them), else the
    task table's; a class index beyond both is shown by number."""
    meta = json.loads(str(data["meta"])) if "meta" in data else {}
    names = list(meta.get("label_names") or get_task(task).label_names)
    return class_names(names, max(int(data["labels"].max(initial=-1)) + 1, data["prototypes"].shape[1], len(names)))
