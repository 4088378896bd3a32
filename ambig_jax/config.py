"""The one frozen description of a run; flags select, this describes (saved as config.json).

`Config` holds the training hyper-parameters and, in `Config.rule`, the label loop's decision
rule, so a run's config.json says everything that made its outputs, and a replay under another
rule is `config.replace(rule=...)`. Every entry point builds its config the same way: a preset
(`PRESETS`) plus `field=value` overrides typed from the fields (`Config.override`).
"""

import dataclasses
import typing

from ambig_jax import serialization

STRATEGIES = ("hybrid", "divdis", "seqmi", "dbat", "erm")
POOLS = ("target", "unlabeled+target")
TRUNKS = ("auto", "none")
SCHEDULES = ("cosine", "constant")
COMPOSITES = ("students", "consistent", "all")


@dataclasses.dataclass(frozen=True)
class Rule:
    """How the label loop asks, keeps a head, estimates its accuracy and decides
    (`disambiguation`); the same for every data set.

    prior_noise, prior_strength: the Beta prior (mean, pseudo-labels) of the rate eps at which
      the truth departs from the right head on the rows the heads dispute (where the labels
      land, and where a good head's errors gather: 2-6% on sets 02-05).
    decided: posterior mass on one head from which queries go to random rows (1: never).
    check_from: posterior mass on one head from which queries test whether any head is the
      label's feature (`disambiguation.identification_query`) rather than which one.
    pattern_from: posterior mass on one head from which a query goes to the pattern of
      disagreement whose rows carry the most information together (`disambiguation.select_query`)
      rather than to the single most informative row. Once a head leads, the single best row is
      where every head left behind agrees against it, a rare pattern where a good leader's own
      errors gather (on 03 both block heads agree only where the digit and the picture do); a
      common pattern tests the leader's feature rather than its errors. 1: never.
    check_ties: such a check is drawn among the rows at least this share as informative as the
      best (1: the most informative; lower: a wider sample of the rows the leaders agree on).
    exact_prior: prior weight of the estimate's "exact" reading of the heads' probabilities
      (the head is the hypothesis; its doubt is an artefact of the diversity term).
    temperatures: the calibrated readings, the heads' probabilities sharpened at each of these
      temperatures (1: as given), sharing the prior 1 - exact_prior evenly: the labels weigh how
      far a head's doubt is to be believed (pushed heads hedge below their accuracy, by an
      amount no one value fits; `disambiguation.readings`). (1,): the calibrated reading alone.
    query_noise: eps of the likelihood while choosing queries and heads.
    near_best_gain: nats; queries this close to the best gain count as ties, broken towards
      the kind of disagreement asked least.
    uninformative_gain: below this best gain the heads agree everywhere: rows are sampled.
    z_shifted: the shift test calls the target shifted above 1/2 + z_shifted standard
      deviations of the labeled-vs-target classifier's no-shift noise (`shift`).
    unidentified_prior: prior probability that no head is the label's feature (the data do
      not identify it, as on 06 and 07, or the head search missed it, as on 456 some seeds:
      2-3 of the 13 offline sets); the labels weigh it against the heads
      (`disambiguation.unidentified_weight`).
    margin: the estimate's mean must beat the set's default score by more than this to submit
      (0: the decision that maximises the expected score under the estimate).
    interval: probability mass of the reported interval (its coverage is measured; it does
      not decide).
    block_held_out: a kept head that sees one feature block (`blocks`) is estimated, under its
      own hypothesis, from its block member's hits on held-out labeled rows rather than from
      its probabilities, and those hits are one more reading of how often the labels depart
      from such a head when "no head is the label" is weighed.
    """
    prior_noise: float = 0.05
    prior_strength: float = 5.0
    decided: float = 1.0
    check_from: float = 0.95
    pattern_from: float = 0.5
    check_ties: float = 0.95
    exact_prior: float = 0.5
    temperatures: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    query_noise: float = 0.05
    near_best_gain: float = 0.05
    uninformative_gain: float = 1e-4
    z_shifted: float = 3.0
    unidentified_prior: float = 0.2
    margin: float = 0.0
    interval: float = 0.8
    block_held_out: bool = True

    def __post_init__(self):
        for name in ("decided", "check_from", "pattern_from", "check_ties", "exact_prior",
                     "query_noise", "interval", "unidentified_prior"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"rule.{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.temperatures or not all(0.0 < t <= 1.0 for t in self.temperatures):
            raise ValueError(f"rule.temperatures must be one or more values in (0, 1], "
                             f"got {self.temperatures}")
        if not 0.0 < self.prior_noise < 1.0 or self.prior_strength <= 0:
            raise ValueError(f"rule.prior_noise must be in (0, 1) and rule.prior_strength > 0, "
                             f"got {self.prior_noise} and {self.prior_strength}")


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

    trunk: "auto" puts colour images [3, H, W] through a frozen random convolutional trunk
      before the heads (`features`); "none" gives every input to the backbone as it is.
    local_patterns: other images (the one-channel MNIST sets) keep their pixels and gain, for
      this many random 3x3 filters, how far the filter's maximum and minimum over the image
      pass a fence that few rows pass (`features.PixelsAndPatterns`): a rare pattern that may
      be anywhere, like set 13's backdoor patch, is one feature then. 0: pixels only.
    feature_blocks: before the heads train, split the input features into the two blocks whose
      dependence vanishes on the target, and test whether one ERM head on each block explains
      the labels while the two are independent on the target; if so, the hybrid's joint pair
      sees one block each, so that neither can mix the two features (`blocks`).
    block_balance: where the feature blocks passed, the joint pair's heads, which see one block
      each, hold their target predictions to their block head's class balance on the target
      (`blocks.BlockTest.head_priors`) instead of the labeled rows' (DivDis's prior): a target
      whose class balance is not the labeled rows' no longer pulls them off it (01 and 05,
      seeds 0-9: best head 0.990 / 0.983 -> 0.996 / 0.990). It was off by default until the
      label loop's pattern rule (`Rule.pattern_from`): before that rule, the labels lost 03's
      right head on 6 of seeds 0-19 with it against 1 without it. Under that rule, 02 seed 1
      and 03 seed 4 of seeds 0-9 still abstain with it, while seeds 10-19 of 02 and 03 and
      fresh seeds 68-72 of 00-03 and 05 score the same both ways (docs/head-search.md).
      False: the labeled rows' balance for every head.
    block_students: where the feature blocks passed but leak (the other block foretells a
      block head's target classes beyond slight agreement, `blocks.BlockTest.leaky`: inputs
      that each weigh both features, as a linear embedding's components do), the joint pair's
      heads, which see one block each, stand for their two students, which see every input
      and learn together on their confident target rows and the labeled rows
      (`refinement.with_pair_students`); the refinement of one of them, or of a head that
      follows one of them (`blocks.followed_head`), learns with the other and the labeled
      rows, and no refinement student is held to one block (docs/head-search.md). One
      two-head training and two members (the leak, `blocks.leaks`) where the blocks pass;
      none elsewhere.
    pairwise: with more than two classes (a label per pair of classes within the budget, and
      no feature blocks that passed), composite heads follow the usual ones: each couples one
      head of every pair of classes' binary joint pair, trained on the rows whose two likeliest
      classes under an ERM router are that pair (`pairwise`). With three classes the diversity
      term cannot tell the features from mixtures of them.
    composites: which composites follow the usual heads. "students" (the default): the most
      consistent composite and its complement, the two that read one feature each (the pair
      heads that read one side agree across pairs, `pairwise.cross_reading`), each replaced
      by its student, a plain head trained on its confident target rows, with the
      composite's doubt (`training.with_teacher_doubt`); "consistent": those two composites
      themselves; "all": every composite (2^P), as before 2026-12-04 (docs/head-search.md).
    router_mixtures: the pairwise router also learns this many half-and-half mixtures of two
      labeled rows of different classes per labeled row, each labeled once with either class
      (`pairwise.mixtures`), so that it ranks both of a row's features' classes first where
      they differ. 0 (the default): the labeled rows alone. On 456, 2 routes more rows right and
      lifts the best head, but the labels then keep a head under the best more often, and the
      score falls (docs/head-search.md), so it stays off until the label loop can use it.
    pair_replicates: where the feature blocks did not pass, the hybrid's joint pair, and each
      pair of classes' binary pair (`pairwise`), is trained this many times from different
      starts, and its heads are the mean of the starts', matched by their agreement on the
      target (`training.replicate_pair`): two-class independence is one equation, which pairs
      that mix the features in part also solve, each start on other rows. 1: one start.
    pair_drop_outlier: with three or more such starts, the one that agrees least with the
      others on the target is left out of the mean: free, and on 23 (seeds 0-9, three
      embedding families) the one pair that missed its ceiling by 5.7 points (relu, seed 6)
      comes within 2 (docs/head-search.md).
    pair_agreeing_rows: each pair of classes' pool (its routed target rows, where the
      diversity term reads) is filled with labeled rows of its two classes up to the target's
      rows whose two features are both in the pair (`pairwise.agreeing_rows`). The router
      sends a row whose features agree to one pair of its class only, so a pair's pool can be
      mostly rows whose features differ, where the true pair of features is far from
      independent and the pair's heads mix them. 456, seeds 0-9, every embedding family: figures in
      docs/head-search.md ("A pair's pool without the rows whose features agree").
    chain_weight: the hybrid chain's links (each head pushed independent of the frozen head
      before it) weigh their diversity term this many times `diversity_weight`; the joint pair
      and other strategies keep `diversity_weight`. 1 (the default): every edge alike. 3 lifts
      04's best head (a link that leans a little on the grey half) on tuning seeds 0-9 (0.985 ->
      0.989, 9 -> 10 of 10 within 2 points of the ceiling) and leaves 02, 03 and 05 as they
      were, but on fresh seeds 76-78 it moves 04's links both ways (0.986 -> 0.987) and 03's
      heads fall a little on both samples, so it is not on (docs/head-search.md, "The chain's
      links weighed three times").
    pool: the rows the diversity term sees. The target set by default: there the features
      disagree at rate ~1/2, so the true pair of features is independent; the unlabeled rows
      hold fewer cross pairs, which makes the true pair dependent.
    schedule: the learning rate over the steps. "cosine" settles the heads but makes the ERM
      anchor over-confident, which inflates the estimate on sets no head explains (06), so
      "constant" is the default (figures in docs/method.md).
    anchor_student: where the strategy has an ERM anchor (head 0, no diversity edge, beside
      pushed heads: hybrid, seqmi, dbat), the anchor the labels choose among is its student: a
      plain member trained on the anchor's confident target rows (`refinement.train_student`;
      the labeled rows too where the target is drawn like them), before any label is asked.
      The anchor learned the labeled rows, where the features agree, and leans a little on the
      one it did not take; on the target they are independent, so its confident rows teach the
      feature it follows. 08 (the digit beside a noise level), seeds 0-9: the anchor, the best
      head, is 0.953, 2.5 points under the ceiling on seeds 2 and 6; its student 0.965, within
      2 points on every seed (docs/head-search.md). One member's training a set.
    refine: after the head is chosen, a fresh student learns the chosen head's confident
      target predictions and relabels the target set (`refinement`); it leaves out the
      `refine_drop` least confident share of each predicted class.
    refine_by_rival: the refinement's cut is made within each cell of (the kept head's class,
      its rival's class), the rival being the other head least dependent on it
      (`refinement.rival`), so the rows the student learns are as independent of the rival
      feature as the target is. A cut by confidence alone keeps fewer of the rows where the
      two disagree, where a head that leans on the rival is least sure, and the student
      learns the lean back (docs/refinement.md).
    shift_test: before the labels, test whether the target is drawn like the labeled rows
      (`shift`); when it is, a plain ERM head kept is estimated from held-out labeled rows.
    shift_steps: training steps of the shift test's labeled-vs-target classifier. A shift in how
      two features agree (888's halves) is subtle, and 400 steps miss it where 1500 see it;
      plain shifts are called at the first look, a quarter of the way (`shift.LOOKS`).
    rule: the label loop's decision rule (`Rule`).
    """
    strategy: str = "hybrid"
    num_heads: int = 6
    backbone: str = "mlp"
    trunk: str = "auto"
    local_patterns: int = 16
    feature_blocks: bool = True
    block_balance: bool = True
    block_students: bool = True
    pairwise: bool = True
    composites: str = "students"
    router_mixtures: int = 0
    pair_replicates: int = 3
    pair_drop_outlier: bool = True
    pair_agreeing_rows: bool = True
    hidden: tuple[int, ...] = (256, 128)
    steps: int = 400
    batch_labeled: int = 128
    batch_pool: int = 256
    pool: str = "target"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    weight_decay: float = 1e-4
    diversity_weight: float = 1.0
    chain_weight: float = 1.0
    prior_weight: float = 1.0
    label_smoothing: float = 0.1
    anchor_student: bool = True
    refine: bool = True
    refine_drop: float = 0.1
    refine_by_rival: bool = True
    shift_test: bool = True
    shift_steps: int = 1500
    seed: int = 0
    budget: int = 5
    rule: Rule = Rule()

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.trunk not in TRUNKS:
            raise ValueError(f"trunk must be one of {TRUNKS}, got {self.trunk!r}")
        if self.composites not in COMPOSITES:
            raise ValueError(f"composites must be one of {COMPOSITES}, got {self.composites!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.refine_drop < 1.0:
            raise ValueError(f"refine_drop must be in [0, 1), got {self.refine_drop}")
        if self.local_patterns < 0:
            raise ValueError(f"local_patterns must be >= 0, got {self.local_patterns}")
        if self.router_mixtures < 0:
            raise ValueError(f"router_mixtures must be >= 0, got {self.router_mixtures}")
        if self.pair_replicates < 1:
            raise ValueError(f"pair_replicates must be >= 1, got {self.pair_replicates}")
        if self.chain_weight < 0:
            raise ValueError(f"chain_weight must be >= 0, got {self.chain_weight}")
        if self.num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {self.num_heads}")
        if self.steps < 1 or self.shift_steps < 1:
            raise ValueError(f"steps and shift_steps must be >= 1, got {self.steps} and "
                             f"{self.shift_steps}")
        if not 0 <= self.budget <= 5:
            raise ValueError(f"budget must be between 0 and 5 labels, got {self.budget}")

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return serialization.to_json(self)

    @classmethod
    def from_json(cls, data: dict) -> "Config":
        """The config of a config.json or a record (missing fields take today's defaults)."""
        return serialization.from_json(cls, data, "config")

    def override(self, assignments) -> "Config":
        """This config with `field=value` assignments applied, typed from the fields.

        A nested field is named with a dot (`rule.decided=0.99`); tuples are comma lists
        (`hidden=512,256`); booleans are true/false. Later assignments win.

        Raises:
          ValueError: naming the assignment, the field and the accepted values.
        """
        config = self
        for assignment in assignments:
            path, sep, text = assignment.partition("=")
            if not sep or not path.strip():
                raise ValueError(f"{assignment!r}: an override is field=value, e.g. steps=300")
            config = _assign(config, path.strip().split("."), text.strip(), assignment)
        return config


def _assign(obj, path: list[str], text: str, assignment: str):
    """`obj` with the field at `path` set to `text` parsed as the field's type."""
    hints = typing.get_type_hints(type(obj))
    name = path[0]
    if name not in hints:
        raise ValueError(f"{assignment!r}: {type(obj).__name__} has no field {name!r}; fields: "
                         f"{', '.join(hints)}")
    kind = hints[name]
    if len(path) > 1:
        if not dataclasses.is_dataclass(kind):
            raise ValueError(f"{assignment!r}: {name} has no sub-fields")
        value = _assign(getattr(obj, name), path[1:], text, assignment)
    elif dataclasses.is_dataclass(kind):
        raise ValueError(f"{assignment!r}: set one field of {name} at a time, e.g. "
                         f"{name}.{dataclasses.fields(kind)[0].name}=...")
    else:
        value = _parse(kind, text, assignment)
    try:
        return dataclasses.replace(obj, **{name: value})
    except ValueError as e:
        raise ValueError(f"{assignment!r}: {e}") from None


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _parse(kind, text: str, assignment: str):
    try:
        if kind is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError("expected true or false")
            return text.lower() in _TRUE
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            return tuple(item(v) for v in text.split(",") if v.strip())
        return kind(text)
    except ValueError as e:
        raise ValueError(f"{assignment!r}: {text!r} is not a valid "
                         f"{getattr(kind, '__name__', kind)} ({e})") from None


# Named starting points. "long" trains 1500 steps, the default until 2026-12-02: 2.9x slower
# for heads no better on the sets a head explains (docs/speed.md). "smoke" trains in seconds:
# for tests, and to check a set or a server end to end before a real run (its accuracy means
# nothing).
PRESETS = {
    "default": Config(),
    "long": Config(steps=1500),
    "smoke": Config(num_heads=4, steps=200, shift_steps=200, hidden=(64,), batch_pool=128,
                    pair_replicates=2),
}


def get(preset: str = "default", overrides=()) -> Config:
    """A preset with `field=value` overrides applied (the entry points' one way to a config)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown config {preset!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[preset].override(overrides)
