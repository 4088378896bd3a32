"""Hand-made run records for the tests of the tools that read them (benchmark, score table)."""

from ambig_jax import disambiguation as dis
from ambig_jax import record
from ambig_jax.config import Config


def fake_record(seed: int, strategy: str, dataset_id: int, accuracy: float, submitted: bool,
                estimated: float = 0.9, points: float = 1.0, name: str | None = None,
                labels: int = 5) -> record.RunRecord:
    """A record whose kept head (head 0) is 0.01 below the written `accuracy` and whose best
    head (head 1) is 0.01 above it; 1 s compile, 2 s training, 4 s for the set."""
    return record.RunRecord(
        dataset=record.SetInfo(id=dataset_id, name=name or f"{dataset_id:02d}_set",
                               classes=(0, 1), points=points, default_score=0.8, path=None,
                               labeled=10, unlabeled=20, target=10),
        config=Config(strategy=strategy, seed=seed, num_heads=2),
        oracle="local",
        queries=tuple(record.Query(row=i, label=i % 2) for i in range(labels)),
        posteriors=((0.5, 0.5),) + ((0.9, 0.1),) * labels,
        chosen_head=0,
        estimate=dis.Estimate(accuracy=estimated, low=estimated - 0.05,
                              high=min(estimated + 0.05, 1.0), label_errors=0,
                              num_labels=labels),
        decision=dis.Decision(submitted, "test"),
        shift=None, refinement=None, agreement=((1.0, 0.5), (0.5, 1.0)),
        true_accuracy=accuracy, head_accuracies=(accuracy - 0.01, accuracy + 0.01),
        timings=record.Timings(compile=1.0, train=2.0, shift=0.0, refine=0.0, solve=3.0,
                               set=4.0),
        versions={"jax": "test"})
