"""The pictures of a run: PNG files and a `report.html` next to `report.json` (headless).

What a person looks at to trust (or not) a run: examples of each split, what each head looks
at per class (`saliency`), the queried rows with their labels, how the head posterior moved
after each label, and how often the heads agree on the target set.
"""

import html
import json
import pathlib

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ambig_jax import outputs  # noqa: E402

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


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    with outputs.replacing(path) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def examples_figure(dataset, path, per_split: int = 6):
    """A few labeled (with their labels), unlabeled and target rows."""
    if dataset.x_target.ndim == 2 and dataset.x_target.shape[1] <= 3:  # points: scatter them
        fig, ax = plt.subplots(figsize=(4.5, 4))
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
    fig, axes = plt.subplots(3, per_split, figsize=(1.6 * per_split, 4.2), squeeze=False)
    for i, (name, x) in enumerate(splits):
        for j in range(per_split):
            title = name if j == 0 else ""
            if name == "labeled":
                title = f"{title} y={dataset.classes[dataset.y_labeled[j]]}".strip()
            _show(axes[i, j], x[j], title)
    return _save(fig, path)


def saliency_figure(gradient: np.ndarray, occlusion: np.ndarray, counts: np.ndarray, classes,
                    path, head_accuracy=None, chosen: int | None = None):
    """Per head (rows) and class: the input-gradient map and the occlusion map."""
    num_heads, num_classes = counts.shape
    fig, axes = plt.subplots(num_heads, 2 * num_classes, squeeze=False,
                             figsize=(2.2 * 2 * num_classes, 1.3 * num_heads + 0.4))
    for h in range(num_heads):
        for c in range(num_classes):
            for k, (kind, maps) in enumerate((("gradient", gradient), ("occlusion", occlusion))):
                ax = axes[h, 2 * c + k]
                _show(ax, np.clip(maps[h, c], 0, None), cmap="magma",
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
        fig, ax = plt.subplots(figsize=(3, 1))
        ax.text(0.5, 0.5, "no labels were asked", ha="center", va="center")
        ax.axis("off")
        return _save(fig, path)
    fig, axes = plt.subplots(1, len(queries), figsize=(2.0 * len(queries), 2.3), squeeze=False)
    predictions = head_probs.argmax(-1)  # [H, N] class indices
    for i, (row, label, index) in enumerate(queries):
        heads = "".join(str(int(p == index)) for p in predictions[:, row])
        _show(axes[0, i], x_target[row], f"#{i + 1} row {row}: y={label}\nheads right: {heads}")
    return _save(fig, path)


def posterior_figure(posteriors: np.ndarray, path, chosen: int | None = None):
    """[K + 1, H] head posterior before any label and after each."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
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
    fig, ax = plt.subplots(figsize=(0.6 * num_heads + 1.8, 0.6 * num_heads + 1.2))
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


def _shift_line(found: dict | None) -> str:
    if found is None:
        return "not run"
    line = (f"labeled-vs-target balanced accuracy {found['balanced_accuracy']:.3f} "
            f"(z {found['z']:.1f}): ")
    if found["shifted"]:
        return line + "shifted"
    held = found["held_out"]
    return line + (f"not shifted; ERM held-out {held['correct']} of {held['rows']} labeled "
                   "rows right")


def _html(report: dict, figures: dict[str, str]) -> str:
    ds = report["dataset"]
    est = report["estimate"]
    rows = [("decision", ("SUBMIT" if report["decision"]["submit"] else "ABSTAIN") + ": "
             + report["decision"]["reason"]),
            ("strategy", report["strategy"]), ("kept head", report["chosen_head"]),
            ("labels used", len(report["queries"])),
            ("estimated accuracy", f"{est['accuracy']:.3f} [{est['low']:.3f}, {est['high']:.3f}]"),
            ("weight of the exact reading", f"{est.get('exact_weight', 0.0):.2f} (the heads' "
             "probabilities read as exact rather than calibrated)"),
            ("shift test", _shift_line(report.get("shift"))),
            ("true accuracy", "unknown" if report["true_accuracy"] is None
             else f"{report['true_accuracy']:.3f}"),
            ("timings", json.dumps({k: round(v, 1) for k, v in report["timings"].items()}))]
    table = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                      for k, v in rows)
    images = "\n".join(f"<h2>{name}</h2><img src=\"{html.escape(file)}\" alt=\"{name}\">"
                       for name, file in figures.items())
    title = html.escape(f"{ds['name']} ({ds['id']})")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
            "th{text-align:left;padding-right:1em}img{max-width:100%}</style></head>"
            f"<body><h1>{title}</h1><table>{table}</table>{images}</body></html>\n")


def write_report(run_dir, solution, report: dict, saliency_maps: dict[str, np.ndarray]):
    """Writes the figures and `report.html` into run_dir; returns their paths.

    Args:
      run_dir: the set's output folder.
      solution: `pipeline.Solution` of the run.
      report: the run's report.json content (`challenge.report`).
      saliency_maps: `gradient`, `occlusion` [H, C, *S] and `counts` [H, C] (`saliency`).
    """
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ds = solution.dataset
    head_accuracy = report.get("head_true_accuracy")
    indices = ds.to_index([label for _, label in solution.queries]) if solution.queries else []
    queries = [(row, label, int(i)) for (row, label), i in zip(solution.queries, indices)]
    paths = [
        examples_figure(ds, run_dir / "examples.png"),
        saliency_figure(saliency_maps["gradient"], saliency_maps["occlusion"],
                        saliency_maps["counts"], ds.classes, run_dir / "saliency.png",
                        head_accuracy, solution.chosen_head),
        queries_figure(ds.x_target, queries, solution.head_probs, run_dir / "queries.png"),
        posterior_figure(np.stack(solution.posteriors), run_dir / "posterior.png",
                         solution.chosen_head),
        agreement_figure(solution.agreement_matrix(), run_dir / "agreement.png"),
    ]
    page = _html(report, {name: path.name for name, path in zip(FIGURES, paths)})
    outputs.write_atomic(run_dir / "report.html", page)
    return paths + [run_dir / "report.html"]
