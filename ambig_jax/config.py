"""The one frozen description of a run; flags select, this describes (saved as config.json)."""

import dataclasses

STRATEGIES = ("hybrid", "divdis", "seqmi", "dbat", "erm")
POOLS = ("target", "unlabeled+target")
SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class Config:
    """Hyper-parameters of a run; the same values serve every data set.

    Strategies (how heads are made to differ on the unlabeled pool; `training.diversity_edges`):
      hybrid: a chain of heads, head 0 plain ERM and each next head independent of the one
        before it, plus a joint DivDis pair (the default).
      seqmi: head 0 is plain ERM; head h minimises its mutual information with the frozen heads
        before it (D-BAT's ordering, DivDis's measure).
      divdis: mutual information between every pair of heads, all heads trained jointly (DivDis).
      dbat: head h maximises the probability of disagreeing with each frozen earlier head (D-BAT).
      erm: no diversity term; heads differ by their initialisation only.

    pool: the rows the diversity term sees. The target set by default: its rows are where the
      features disagree at rate ~1/2, so the true pair of features is independent there; adding
      the unlabeled rows (fewer cross pairs) made the true pair dependent and cost accuracy
      (seed 0, mean best head 0.969 -> 0.925).
    schedule: the learning rate over the steps. "cosine" decays it to 0, which settles the
      heads (seed 1, best head on 00/01/02/03: +0.004/+0.002/+0.003/+0.010 over "constant")
      but makes the ERM anchor more over-confident: on set 06 (seed 0) the estimate rose
      from 0.84 to 0.90 at a true 0.76 and the run submitted. So "constant" stays the default.
    refine: after the head is chosen, a fresh student learns the chosen head's confident
      target predictions and relabels the target set (`refinement`); it leaves out the
      `refine_drop` least confident share of each predicted class.
    shift_test: before the labels, test whether the target is drawn like the labeled rows
      (`shift`); when it is, a plain ERM head kept is estimated from held-out labeled rows.
    """
    strategy: str = "hybrid"
    num_heads: int = 6
    backbone: str = "mlp"
    hidden: tuple[int, ...] = (256, 128)
    steps: int = 1500
    batch_labeled: int = 128
    batch_pool: int = 256
    pool: str = "target"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    weight_decay: float = 1e-4
    diversity_weight: float = 1.0
    prior_weight: float = 1.0
    label_smoothing: float = 0.1
    refine: bool = True
    refine_drop: float = 0.1
    shift_test: bool = True
    seed: int = 0
    budget: int = 5

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.refine_drop < 1.0:
            raise ValueError(f"refine_drop must be in [0, 1), got {self.refine_drop}")
        if self.num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {self.num_heads}")
        if not 0 <= self.budget <= 5:
            raise ValueError(f"budget must be between 0 and 5 labels, got {self.budget}")

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)
