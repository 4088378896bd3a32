"""The pictures of a run: PNG files and a `report.html` next to `report.json`.

What a person looks at to trust (or not) a run: examples of each split, what each head looks
at per class (`saliency`), the queried rows with their labels, how the head posterior moved
after each label, and how often the heads agree on the target set.

Figures are drawn with matplotlib's object API (`matplotlib.figure.Figure`), imported when the
first figure is drawn: nothing here selects a backend or touches pyplot's state, so importing
the runner leaves a notebook's inline figures alone.
"""

import dataclasses
import html
import pathlib

import numpy as np

from ambig_jax import blocks
from ambig_jax import outputs
from ambig_jax.record import RunRecord

FIGURES = ("examples", "saliency", "queries", "posterior", "agreement")


def _as_picture(row: np.ndarray) -> np.ndarray:
    """One input [*S] as something `imshow` draws: [H, W] grey, [H, W, 3] colour, or a [1, D]
    strip for a vector."""
    if row.ndim == 1:
        return row[None, :]
    if row.ndim == 3 and row.shape[0] == 3:
        rgb = np.moveaxis(row, 0, -1)
        return (rgb - rgb.min()) / max(float(np.ptp(rgb)), 1e-8)
    return row.reshape((-1,) + row.shape[-2:]).mean(axis=0)


def _show(ax, row: np.ndarray, title: str = "", cmap: str = "gray"):
    ax.imshow(_as_picture(row), cmap=cmap, aspect="auto" if row.ndim == 1 else "equal",
              interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _figure(rows: int = 1, cols: int = 1, figsize=(4.5, 3)):
    """A figure and its [rows, cols] axes, without pyplot."""
    from matplotlib.figure import Figure  # lazy: matplotlib costs an import only when drawing
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    with outputs.replacing(path) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    return path


def examples_figure(dataset, path, per_split: int = 6):
    """A few labeled (with their labels), unlabeled and target rows."""
    if dataset.x_target.ndim == 2 and dataset.x_target.shape[1] <= 3:  # points: scatter them
        fig, axes = _figure(figsize=(4.5, 4))
        ax = axes[0, 0]
        for c, name in enumerate(dataset.classes):
            pts = dataset.x_labeled[dataset.y_labeled == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=6, label=f"labeled {name}")
        ax.scatter(dataset.x_target[:, 0], dataset.x_target[:, 1], s=4, c="grey", alpha=0.4,
                   label="target (unlabeled)")
        ax.legend(fontsize=7)
        ax.set_title(f"{dataset.name}: x1 vs x2", fontsize=9)
        return _save(fig, path)
    splits = [("labeled", dataset.x_labeled), ("unlabeled", dataset.x_unlabeled),
              ("target", dataset.x_target)]
    fig, axes = _figure(3, per_split, figsize=(1.6 * per_split, 4.2))
    for i, (name, x) in enumerate(splits):
        for j in range(per_split):
            title = name if j == 0 else ""
            if name == "labeled":
                title = f"{title} y={dataset.classes[dataset.y_labeled[j]]}".strip()
            _show(axes[i, j], x[j], title)
    return _save(fig, path)


def saliency_figure(gradient: np.ndarray | None, occlusion: np.ndarray, counts: np.ndarray,
                    classes, path, head_accuracy=None, chosen: int | None = None):
    """Per head (rows) and class: the input-gradient map (when there is one) and the occlusion
    map; a map of a colour image is shown averaged over its channels."""
    kinds = [(kind, maps) for kind, maps in (("gradient", gradient), ("occlusion", occlusion))
             if maps is not None]
    num_heads, num_classes = counts.shape
    fig, axes = _figure(num_heads, len(kinds) * num_classes,
                        figsize=(2.2 * len(kinds) * num_classes, 1.3 * num_heads + 0.4))
    for h in range(num_heads):
        for c in range(num_classes):
            for k, (kind, maps) in enumerate(kinds):
                ax = axes[h, len(kinds) * c + k]
                picture = maps[h, c].mean(axis=0) if maps.ndim == 5 else maps[h, c]
                _show(ax, np.clip(picture, 0, None), cmap="magma",
                      title=f"{kind}, class {classes[c]} ({counts[h, c]} rows)" if h == 0 else "")
        label = f"head {h}" + (" (kept)" if h == chosen else "")
        if head_accuracy is not None:
            label += f"\ntarget acc {head_accuracy[h]:.3f}"
        axes[h, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("what each head looks at, per predicted class (brighter = matters more)",
                 fontsize=9)
    return _save(fig, path)


def queries_figure(x_target, queries, head_probs, path):
    """The queried target rows with their revealed labels and every head's prediction."""
    if not queries:
        fig, axes = _figure(figsize=(3, 1))
        ax = axes[0, 0]
        ax.text(0.5, 0.5, "no labels were asked", ha="center", va="center")
        ax.axis("off")
        return _save(fig, path)
    fig, axes = _figure(1, len(queries), figsize=(2.0 * len(queries), 2.3))
    predictions = head_probs.argmax(-1)  # [H, N] class indices
    for i, (row, label, index) in enumerate(queries):
        heads = "".join(str(int(p == index)) for p in predictions[:, row])
        _show(axes[0, i], x_target[row], f"#{i + 1} row {row}: y={label}\nheads right: {heads}")
    return _save(fig, path)


def posterior_figure(posteriors: np.ndarray, path, chosen: int | None = None):
    """[K + 1, H] head posterior before any label and after each."""
    fig, axes = _figure(figsize=(4.5, 3))
    ax = axes[0, 0]
    steps = np.arange(len(posteriors))
    for h in range(posteriors.shape[1]):
        ax.plot(steps, posteriors[:, h], marker="o", lw=2.5 if h == chosen else 1,
                label=f"head {h}" + (" (kept)" if h == chosen else ""))
    ax.set_xlabel("labels revealed")
    ax.set_ylabel("posterior")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(steps)
    ax.legend(fontsize=7)
    return _save(fig, path)


def agreement_figure(matrix: np.ndarray, path):
    """[H, H] share of target rows on which two heads predict the same class."""
    num_heads = len(matrix)
    fig, axes = _figure(figsize=(0.6 * num_heads + 1.8, 0.6 * num_heads + 1.2))
    ax = axes[0, 0]
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for i in range(num_heads):
        for j in range(num_heads):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] < 0.6 else "black")
    ax.set_xticks(range(num_heads))
    ax.set_yticks(range(num_heads))
    ax.set_title("heads' agreement on the target set", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path)


def _html(run: RunRecord, figures: dict[str, str]) -> str:
    ds, est = run.dataset, run.estimate
    rows = [("decision", ("SUBMIT" if run.submitted else "ABSTAIN") + ": " + run.decision.reason),
            ("strategy", run.config.strategy), ("kept head", run.chosen_head),
            ("labels used", run.labels_used),
            ("estimated accuracy", f"{est.accuracy:.3f} [{est.low:.3f}, {est.high:.3f}]"),
            ("weight of the exact reading", f"{est.exact_weight:.2f} (the heads' "
             "probabilities read as exact rather than as given or sharpened)"),
            ("no head the label's feature", f"{est.unidentified:.2f} (posterior probability "
             "that the data do not identify the label)"),
            ("feature blocks", "not tested" if run.blocks is None else run.blocks.describe()),
            ("shift test", "not run" if run.shift is None else run.shift.describe() + (
                "; the feature blocks show a shift, which overrules it"
                if not run.shift.shifted and blocks.shows_shift(run.blocks) else "")),
            ("true accuracy", "unknown" if run.true_accuracy is None
             else f"{run.true_accuracy:.3f}"),
            ("timings (s)", ", ".join(f"{k} {v:.1f}" for k, v in
                                      dataclasses.asdict(run.timings).items() if v))]
    table = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                      for k, v in rows)
    images = "\n".join(f"<h2>{name}</h2><img src=\"{html.escape(file)}\" alt=\"{name}\">"
                       for name, file in figures.items())
    title = html.escape(f"{ds.name} ({ds.id})")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
            "th{text-align:left;padding-right:1em}img{max-width:100%}</style></head>"
            f"<body><h1>{title}</h1><table>{table}</table>{images}</body></html>\n")


def write_report(run_dir, solution, run: RunRecord, saliency_maps: dict[str, np.ndarray]):
    """Writes the figures and `report.html` into run_dir; returns their paths.

    Args:
      run_dir: the set's output folder.
      solution: `pipeline.Solution` of the run (inputs, heads' probabilities).
      run: the run's record (`record.from_solution`).
      saliency_maps: `occlusion` [H, C, *S], `counts` [H, C] and, where the heads see the
        raw inputs, `gradient` [H, C, *S] (`saliency`).
    """
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ds = solution.dataset
    queries = [(q.row, q.label, int(ds.to_index([q.label])[0])) for q in run.queries]
    paths = [
        examples_figure(ds, run_dir / "examples.png"),
        saliency_figure(saliency_maps.get("gradient"), saliency_maps["occlusion"],
                        saliency_maps["counts"], ds.classes, run_dir / "saliency.png",
                        run.head_accuracies, run.chosen_head),
        queries_figure(ds.x_target, queries, solution.head_probs, run_dir / "queries.png"),
        posterior_figure(np.asarray(run.posteriors), run_dir / "posterior.png",
                         run.chosen_head),
        agreement_figure(np.asarray(run.agreement), run_dir / "agreement.png"),
    ]
    page = _html(run, {name: path.name for name, path in zip(FIGURES, paths)})
    outputs.write_atomic(run_dir / "report.html", page)
    return paths + [run_dir / "report.html"]
