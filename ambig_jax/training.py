"""Training the ensemble: one jitted `lax.scan` over all steps, heads vmapped (or sharded).

Data flow: standardised inputs live on the device; each step draws a labeled batch and a
pool batch (unlabeled and/or target rows, allowed by the challenge's rules) from its own
`fold_in` key, computes per-head losses and returns `(state, metrics)`.
"""

import collections
import dataclasses
import functools
import time
import typing

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from ambig_jax import losses
from ambig_jax import models
from ambig_jax import progress
from ambig_jax.config import Config
from ambig_jax.datasets.loader import Dataset

METRIC_NAMES = ("loss", "cross_entropy", "diversity", "prior", "labeled_accuracy")


@chex.dataclass
class TrainState:
    params: chex.ArrayTree  # every leaf [H, ...]
    opt_state: chex.ArrayTree
    step: chex.Array


class TrainData(typing.NamedTuple):
    """A training run's inputs on the device. The row arrays are padded to `bucket_rows` so
    that runs on sets of similar sizes share one compiled program; batches are drawn from the
    first `num_labeled` (`num_pool`) rows only."""
    x_labeled: jax.Array  # [bucket_rows(N_l), *S] standardised
    # [bucket_rows(N_l)] class indices; or [bucket_rows(N_l), H], each head's own, -1 where a
    # head does not learn the row (`refinement.train_students`)
    y_labeled: jax.Array
    num_labeled: jax.Array  # int32 scalar: N_l
    x_pool: jax.Array  # [bucket_rows(N_p), *S] standardised
    num_pool: jax.Array  # int32 scalar: N_p
    prior: jax.Array  # [H, C] each head's class balance on the pool (`train`'s `priors`)
    masks: jax.Array | None = None  # [H, *S] each head's input mask (`blocks`); None: all inputs


def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded by a jax PRNG key, for the draws made outside jit (folds,
    halves, the label loop's rows, the router's mixtures)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def bucket_rows(rows: int) -> int:
    """The padded row count of an array of `rows` rows: the next power of two (at least 64),
    so the shift test's folds, the refinement's student and sets of similar sizes compile the
    same program."""
    return max(64, 1 << (max(rows, 1) - 1).bit_length())


def _padded(x: np.ndarray) -> jax.Array:
    """x with zero rows appended up to `bucket_rows(len(x))`."""
    pad = [(0, bucket_rows(len(x)) - len(x))] + [(0, 0)] * (x.ndim - 1)
    return jnp.asarray(np.pad(x, pad))


@dataclasses.dataclass
class TrainedEnsemble:
    """What training leaves behind: enough to predict, plus timings."""
    config: Config
    module: object
    params: chex.ArrayTree
    standardizer: models.Standardizer
    compile_seconds: float
    train_seconds: float
    flops_per_step: float | None = None  # XLA's count for one step of all heads, if it gives one
    masks: np.ndarray | None = None  # [H, *S] each head's input mask, None: every head sees all
    priors: np.ndarray | None = None  # [H, C] the balance each head's prior term held (`train`)
    # `replicate_pair`: more trainings of the two heads `replicated`, averaged into them
    replicas: tuple["TrainedEnsemble", ...] = ()
    replicated: tuple[int, int] | None = None
    swapped: tuple[bool, ...] = ()  # a replica's heads match the pair's in the other order
    averaged: tuple[int, ...] = ()  # the starts in the mean (0: this ensemble's, r: replica r)
    # `Config.anchor_student`: a one-member ensemble that stands for the ERM anchor (head 0)
    anchor_student: "TrainedEnsemble | None" = None
    # `Config.block_students`: a two-head ensemble that stands for the joint pair, whose heads
    # see one block each, where the blocks leak (`refinement.with_pair_students`)
    pair_students: "TrainedEnsemble | None" = None

    def predict_proba(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Class probabilities [H, N, C] of every head on raw inputs x [N, *S]; a replicated
        pair's heads are the mean of their replicas' (`replicate_pair`), and the anchor is
        its student's where it has one (`anchor_student`); the joint pair's heads are their
        students' classes with the pair heads' doubt where they have students
        (`pair_students`, `with_teacher_doubt`)."""
        apply = _jitted_probs(self.module)
        rows = self.standardizer(np.asarray(x, np.float32))
        chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        # Padded to `bucket_rows` so that sets of similar sizes share one compiled program.
        probs = np.concatenate([np.asarray(apply(self.params, _padded(c), self.masks))[:, :len(c)]
                                for c in chunks], axis=1)
        if self.replicas:
            probs[list(self.replicated)] = self.mean_of_starts(
                probs, lambda replica: replica.predict_proba(x, batch_size))
        if self.anchor_student is not None:
            probs[0] = self.anchor_student.predict_proba(x, batch_size)[0]
        if self.pair_students is not None:
            pair = list(joint_pair(self.config))
            classes = self.pair_students.predict_proba(x, batch_size).argmax(-1)
            probs[pair] = [with_teacher_doubt(teacher, c)
                           for teacher, c in zip(probs[pair], classes)]
        return probs

    @property
    def student_masks(self) -> np.ndarray | None:
        """The input masks a head's refinement student may be held to (`blocks.kept_block`):
        the heads' own, but None where the joint pair stands for students that see every input
        (`pair_students`): the blocks leak, and a student held to one block would miss what
        of its feature the other carries."""
        return None if self.pair_students is not None else self.masks

    def complement(self, head: int) -> int | None:
        """The joint pair's other head where `head` is one of the pair's students
        (`pair_students`): the head that reads the other block's feature, with which its
        refinement learns (`refinement.refine`); else None."""
        pair = joint_pair(self.config)
        if self.pair_students is None or head not in pair:
            return None
        return pair[1] if head == pair[0] else pair[0]

    def mean_of_starts(self, first: np.ndarray, of_replica) -> np.ndarray:
        """[2, ...] the replicated pair's mean over its `averaged` starts of a per-head
        quantity: `first` [H, ...] is this ensemble's, `of_replica(replica)` [2, ...] each
        replica's, taken in the order matched to the pair's."""
        def start(r: int) -> np.ndarray:
            if r == 0:
                return first[list(self.replicated)]
            return of_replica(self.replicas[r - 1])[::-1 if self.swapped[r - 1] else 1]
        return np.mean([start(r) for r in self.averaged], axis=0)

    def calibrated_proba(self, x: np.ndarray) -> np.ndarray:
        """`predict_proba` [H, N, C] with label smoothing's ceiling undone on pushed heads."""
        probs = self.predict_proba(x)
        return np.stack([unsmooth(p, self.config.label_smoothing) if push else p
                         for p, push in zip(probs, pushed_heads(self.config))])


def with_teacher_doubt(teacher: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """[N, C]: a student's predicted `classes` [N] with its teacher's doubt: the teacher's
    probabilities `teacher` [N, C], its largest swapped onto the student's class where the two
    disagree. A student learned its teacher's confident rows as certain, so its own probability
    says nothing of how likely it is right; the teacher's does."""
    rows = np.arange(len(teacher))
    taught = teacher.argmax(-1)
    doubted = teacher.copy()
    doubted[rows, classes] = teacher[rows, taught]
    doubted[rows, taught] = teacher[rows, classes]
    return doubted


def unsmooth(probs: np.ndarray, smoothing: float) -> np.ndarray:
    """Undoes label smoothing's ceiling: a head trained towards (1 - s) one_hot + s / C
    predicts at most 1 - s + s / C where it is sure; map that back to 1."""
    if smoothing <= 0:
        return probs
    num_classes = probs.shape[-1]
    raw = np.clip((probs - smoothing / num_classes) / (1.0 - smoothing), 0.0, None)
    return raw / raw.sum(axis=-1, keepdims=True)


@functools.lru_cache(maxsize=16)
def _jitted_probs(module):
    return jax.jit(lambda params, x, masks: jax.nn.softmax(
        models.ensemble_apply(module, params, x, masks)))


def diversity_edges(strategy: str, num_heads: int) -> np.ndarray:
    """[H, H] 0/1 matrix; edges[h, g] = 1 pushes head h away from (frozen) head g.

    erm: none. divdis: every pair both ways (joint). seqmi, dbat: g < h (sequential: head 0 is
    plain ERM). hybrid: a chain 0 <- 1 <- ... <- H-3 (head 0 an ERM anchor, each next head
    independent of the one before it) and a joint DivDis pair H-2 <-> H-1. The chain finds the
    feature left over once ERM takes the simplest one, and refines it link by link when ERM
    mixes in some of the other (set 03); the joint pair finds two features of equal
    simplicity, which ERM mixes (sets 00, 01).
    """
    h = num_heads
    if strategy == "erm":
        return np.zeros((h, h), np.float32)
    if strategy == "divdis":
        return 1.0 - np.eye(h, dtype=np.float32)
    if strategy in ("seqmi", "dbat"):
        return np.tril(np.ones((h, h), np.float32), k=-1)
    if strategy == "hybrid":
        if h <= 2:  # ERM anchor and one head independent of it
            return np.tril(np.ones((h, h), np.float32), k=-1)
        chain = h - 2
        edges = np.zeros((h, h), np.float32)
        edges[:chain, :chain] = np.eye(chain, k=-1)
        edges[chain:, chain:] = 1.0 - np.eye(h - chain)
        return edges
    raise ValueError(f"unknown strategy {strategy!r}")


def joint_pair(config: Config) -> tuple[int, int] | None:
    """The hybrid's joint DivDis pair (its last two heads), or None (other strategies, or fewer
    than 3 heads)."""
    if config.strategy == "hybrid" and config.num_heads > 2:
        return config.num_heads - 2, config.num_heads - 1
    return None


def pushed_heads(config: Config) -> np.ndarray:
    """[H] bool: heads with a diversity edge (they get label smoothing and the prior term)."""
    return diversity_edges(config.strategy, config.num_heads).sum(axis=1) > 0


def diversity_weights(config: Config) -> np.ndarray:
    """[H] each head's weight on its diversity term: `diversity_weight`, times `chain_weight`
    on the hybrid chain's links (one-way edges: a head pushed from the frozen head before it)."""
    edges = diversity_edges(config.strategy, config.num_heads)
    link = (edges * (1.0 - edges.T)).sum(axis=1) > 0
    chain = config.chain_weight if config.strategy == "hybrid" else 1.0
    return (config.diversity_weight * np.where(link, chain, 1.0)).astype(np.float32)


def has_anchor(config: Config) -> bool:
    """Whether head 0 is an ERM anchor: no diversity edge of its own, while other heads are
    pushed (hybrid, seqmi, dbat with two heads or more)."""
    pushed = pushed_heads(config)
    return bool(not pushed[0] and pushed.any())


def uses_pool(config: Config) -> bool:
    """Whether a step reads the pool batch: only heads with a diversity edge need it (ERM, and
    divdis with a single head, train on the labeled batch alone)."""
    return bool(pushed_heads(config).any())


def make_step(module, optimizer, config: Config):
    """The pure training step `(state, key, data) -> (state, metrics)`.

    Per head h: cross-entropy on labeled data + its weight (`diversity_weights`) * its
    diversity term + prior_weight * KL(prior || its mean pool prediction). Heads that are
    pushed (have edges) also get label smoothing: without it their predictions saturate on the
    labeled fit, and a saturated softmax passes no gradient from the diversity term (sets 04
    and 05, where a grey half is learnt first, need it). Anchor heads stay plain ERM.
    """
    edges = jnp.asarray(diversity_edges(config.strategy, config.num_heads))
    pushed = jnp.asarray(pushed_heads(config), jnp.float32)  # [H]
    weights = jnp.asarray(diversity_weights(config))  # [H]
    diversity = (losses.directed_disagreement if config.strategy == "dbat"
                 else losses.directed_mutual_information)

    reads_pool = uses_pool(config)

    def loss_fn(params, x_lab, y_lab, x_pool, prior, masks):
        logits_lab = models.ensemble_apply(module, params, x_lab, masks)  # [H, Bl, C]
        y_lab = y_lab if y_lab.ndim == 1 else y_lab.T  # [Bl] shared, or [H, Bl] per head
        ce = jnp.where(pushed > 0,
                       losses.cross_entropy(logits_lab, y_lab, config.label_smoothing),
                       losses.cross_entropy(logits_lab, y_lab))
        if reads_pool:
            probs_pool = jax.nn.softmax(models.ensemble_apply(module, params, x_pool, masks))
            div = diversity(probs_pool, edges)  # [H]
            prior_term = pushed * losses.prior_kl(probs_pool, prior)
        else:  # no head has an edge (erm, the refinement student): both terms are zero
            div = prior_term = jnp.zeros_like(ce)
        per_head = ce + weights * div + config.prior_weight * prior_term
        right = logits_lab.argmax(-1) == y_lab  # [H, Bl]
        learned = jnp.broadcast_to(y_lab >= 0, right.shape)
        accuracy = (right & learned).sum(-1) / jnp.maximum(learned.sum(-1), 1)
        return per_head.mean(), dict(loss=per_head.mean(), cross_entropy=ce.mean(),
                                     diversity=div.mean(), prior=prior_term.mean(),
                                     labeled_accuracy=accuracy)

    def step(state: TrainState, key, data: TrainData):
        key = jax.random.fold_in(key, state.step)
        lab_key, pool_key = jax.random.split(key)
        lab_idx = jax.random.randint(lab_key, (config.batch_labeled,), 0, data.num_labeled)
        pool_idx = jax.random.randint(pool_key, (config.batch_pool,), 0, data.num_pool)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(
            state.params, data.x_labeled[lab_idx], data.y_labeled[lab_idx],
            data.x_pool[pool_idx], data.prior, data.masks)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return step


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """AdamW with the configured learning-rate schedule over `config.steps`."""
    learning_rate = config.learning_rate
    if config.schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(config.learning_rate, config.steps)
    return optax.adamw(learning_rate, weight_decay=config.weight_decay)


def head_mesh(num_heads: int):
    """A 1-D mesh over the head axis when several devices divide H, else None (one device)."""
    count = jax.device_count()
    if count == 1 or num_heads % count:
        return None
    return jax.make_mesh((count,), ("heads",), axis_types=(AxisType.Auto,))


def _shard_heads(tree, mesh):
    """Places every leaf with a leading head axis across the mesh; scalars are replicated."""
    def place(leaf):
        spec = PartitionSpec("heads") if getattr(leaf, "ndim", 0) >= 1 else PartitionSpec()
        return jax.device_put(leaf, NamedSharding(mesh, spec))
    return jax.tree.map(place, tree)


def check_finite(metrics: dict[str, np.ndarray]) -> None:
    """Raises FloatingPointError naming the first step and term that is not finite."""
    for name in ("cross_entropy", "diversity", "prior", "loss"):
        bad = np.flatnonzero(~np.isfinite(metrics[name]))
        if bad.size:
            raise FloatingPointError(
                f"non-finite {name} loss at step {int(bad[0])} (value {metrics[name][bad[0]]}); "
                "lower the learning rate or check the inputs for extreme values")


def pool_inputs(dataset: Dataset, pool: str) -> np.ndarray:
    """The unlabeled rows the diversity term sees: unlabeled + target, or target only."""
    if pool == "target":
        return dataset.x_target
    return np.concatenate([dataset.x_unlabeled, dataset.x_target])


_COMPILED: collections.OrderedDict = collections.OrderedDict()  # signature -> compiled scan
_COMPILED_KEEP = 16
MOST_CHUNKS = 50  # chunks of a training run: the progress bar moves between them
# Fields that never reach the compiled scan (keys and data are its arguments): runs that differ
# only in these share one compilation.
_NOT_COMPILED = ("seed", "budget", "refine", "refine_drop", "refine_by_rival", "shift_test",
                 "shift_steps", "rule", "trunk", "local_patterns", "feature_blocks",
                 "block_balance", "pairwise", "pair_replicates", "pair_drop_outlier",
                 "pair_agreeing_rows")


def chunk_length(steps: int, most_chunks: int | None = None) -> int:
    """Steps per compiled chunk: the smallest divisor of `steps` that makes at most
    `most_chunks` (default `MOST_CHUNKS`) chunks, so every chunk is one program; a prime
    count is one chunk."""
    most_chunks = MOST_CHUNKS if most_chunks is None else most_chunks
    return next(d for d in range(-(-steps // most_chunks), steps + 1) if steps % d == 0)


def use_compilation_cache(directory) -> None:
    """Keeps XLA's compiled programs in `directory` across processes (JAX's persistent
    compilation cache): a rerun, or another set of the same shapes in a later run, loads the
    training scan instead of compiling it (4.5 s -> 0.7 s on a 28x56 set, docs/speed.md).
    Programs that compile in under half a second are not kept."""
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _compiled_run(module, optimizer, config: Config, args, length: int):
    """The compiled scan of `length` training steps for these arguments, compiled once per
    module, training configuration, length and argument shapes (and shardings): a rerun of a
    set, and the shift test's folds when they are of equal size, reuse it. The most recent
    `_COMPILED_KEEP` are kept."""
    leaves, tree = jax.tree.flatten(args)
    compiled_fields = config.replace(**{name: getattr(Config, name) for name in _NOT_COMPILED})
    signature = (module, compiled_fields, length, tree,
                 tuple((leaf.shape, str(leaf.dtype), getattr(leaf, "sharding", None))
                       for leaf in leaves))
    if signature in _COMPILED:
        _COMPILED.move_to_end(signature)
        return _COMPILED[signature]
    step = make_step(module, optimizer, config)

    @functools.partial(jax.jit, donate_argnums=0)
    def run(state, key, data):
        return jax.lax.scan(lambda s, _: step(s, key, data), state, None, length=length)

    compiled = _COMPILED[signature] = run.lower(*args).compile()
    while len(_COMPILED) > _COMPILED_KEEP:
        _COMPILED.popitem(last=False)
    return compiled


def labeled_prior(dataset: Dataset) -> np.ndarray:
    """[C] the class balance of the labeled rows (every head's labels, where it learns): the
    balance a pushed head's prior term holds it to by default, as in DivDis."""
    learned = dataset.y_labeled[dataset.y_labeled >= 0]
    return np.bincount(learned, minlength=dataset.num_classes) / len(learned)


def train(config: Config, dataset: Dataset, key: jax.Array | None = None,
          desc: str = "training", masks: np.ndarray | None = None,
          priors: np.ndarray | None = None) -> TrainedEnsemble:
    """Trains `config.num_heads` heads on a data set with one compiled scan, run in chunks of
    `chunk_length` steps with a progress bar between them (a step's randomness comes from
    its index, so the chunking changes nothing in the result).

    Args:
      config: hyper-parameters (strategy, heads, steps, ...).
      dataset: labeled, unlabeled and target inputs; target labels are never used.
      key: PRNG key; defaults to `jax.random.key(config.seed)`.
      desc: the progress bar's label.
      masks: [H, *S] each head's input mask in standardised units (`blocks`); None: every head
        sees every input.
      priors: [H, C] the class balance each pushed head's prior term holds its mean pool
        prediction to (`blocks.BlockTest.head_priors`); None: the labeled rows'
        (`labeled_prior`) for every head.

    Returns:
      The trained ensemble with its compile and run timings (compile is ~0 when a run of the
      same shapes was compiled before); the per-step metrics are checked for non-finite
      values, then dropped.
    """
    *_, ensemble = train_in_stages(config, dataset, key, (config.steps,), desc, masks, priors)
    return ensemble


def stages_of(steps: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """Increasing step counts near `fractions` of `steps` at which `train_in_stages` can stop,
    each a whole number of `chunk_length(steps)` chunks, then `steps` itself."""
    chunk = chunk_length(steps)
    early = {chunk * max(1, round(steps * f / chunk)) for f in fractions}
    return tuple(sorted(s for s in early if s < steps)) + (steps,)


def train_in_stages(config: Config, dataset: Dataset, key: jax.Array | None = None,
                    stages: tuple[int, ...] | None = None, desc: str = "training",
                    masks: np.ndarray | None = None, priors: np.ndarray | None = None
                    ) -> typing.Iterator[TrainedEnsemble]:
    """`train`, stopping after each step count of `stages` to yield the ensemble so far: asking
    for the next one continues the same run, so the last is `train`'s result exactly, and a
    caller that has seen enough stops early (the shift test).

    Args:
      config, dataset, key, desc, masks, priors: as `train`'s.
      stages: increasing step counts, each a multiple of `chunk_length(config.steps)`, the last
        `config.steps` (`stages_of`); None: `config.steps` alone.

    Yields:
      The ensemble after each stage, its `train_seconds` counted from the start.
    """
    stages = (config.steps,) if stages is None else tuple(stages)
    length = chunk_length(config.steps)
    if (stages[-1] != config.steps or any(s % length for s in stages)
            or any(b <= a for a, b in zip(stages, stages[1:]))):
        raise ValueError(f"stages must increase to steps={config.steps} in multiples of "
                         f"{length}, got {stages}")
    key = jax.random.key(config.seed) if key is None else key
    init_key, train_key = jax.random.split(key)
    standardizer = models.Standardizer.fit(dataset.x_labeled, dataset.x_unlabeled,
                                           dataset.x_target)
    module = models.make_backbone(dataset.input_shape, dataset.num_classes, config.backbone,
                                  config.hidden)
    optimizer = make_optimizer(config)
    params = models.init_ensemble(module, init_key, config.num_heads, dataset.input_shape)
    state = TrainState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32))
    mesh = head_mesh(config.num_heads)
    if mesh is not None:
        state = TrainState(params=_shard_heads(state.params, mesh),
                           opt_state=_shard_heads(state.opt_state, mesh), step=state.step)

    if priors is None:
        priors = np.broadcast_to(labeled_prior(dataset), (config.num_heads, dataset.num_classes))
    if np.shape(priors) != (config.num_heads, dataset.num_classes):
        raise ValueError(f"priors must be [{config.num_heads}, {dataset.num_classes}], "
                         f"got {np.shape(priors)}")
    x_pool = pool_inputs(dataset, config.pool)
    data = TrainData(x_labeled=_padded(standardizer(dataset.x_labeled)),
                     y_labeled=_padded(dataset.y_labeled),
                     num_labeled=jnp.int32(len(dataset.y_labeled)),
                     x_pool=_padded(standardizer(x_pool)), num_pool=jnp.int32(len(x_pool)),
                     prior=jnp.asarray(priors, jnp.float32),
                     masks=None if masks is None else jnp.asarray(masks, jnp.float32))
    t0 = time.perf_counter()
    compiled = _compiled_run(module, optimizer, config, (state, train_key, data), length)
    compile_seconds, train_seconds, done = time.perf_counter() - t0, 0.0, 0
    flops = _flops_per_step(compiled)
    for stage in stages:
        t1, chunks = time.perf_counter(), []
        with progress.bar(stage - done, desc) as bar:
            for _ in range((stage - done) // length):
                state, metrics = compiled(state, train_key, data)
                chunks.append(jax.tree.map(np.asarray, metrics))  # waits for the chunk
                bar.update(length)
        check_finite(jax.tree.map(lambda *parts: np.concatenate(parts), *chunks))
        train_seconds, done = train_seconds + time.perf_counter() - t1, stage
        # The next chunk donates the state's buffers, so an early stage yields a copy.
        params = state.params if stage == stages[-1] else jax.tree.map(jnp.copy, state.params)
        yield TrainedEnsemble(config=config, module=module, params=params,
                              standardizer=standardizer,
                              compile_seconds=compile_seconds, train_seconds=train_seconds,
                              flops_per_step=flops,
                              masks=None if masks is None else np.asarray(masks, np.float32),
                              priors=np.array(priors, np.float32))


def _flops_per_step(compiled) -> float | None:
    """XLA's FLOP count of a compiled chunk. Its cost analysis counts a loop's body once, so
    for the chunk's scan this is one training step; None where the backend gives no count."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001: not every backend implements it
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    flops = None if not analysis else analysis.get("flops")
    return float(flops) if flops and flops > 0 else None


def pair_swapped(reference: np.ndarray, replica: np.ndarray) -> bool:
    """Whether a replica's two heads follow the reference pair's in the other order: its
    predicted classes [2, N] agree with the reference's [2, N] more when swapped."""
    same = np.mean(reference == replica, axis=1).sum()
    return bool(np.mean(reference == replica[::-1], axis=1).sum() > same)


def least_agreeing(classes: np.ndarray) -> int:
    """The start whose matched predicted classes [S, 2, N] agree least, summed over the other
    starts, with the others' on the target rows."""
    agreement = np.mean(classes[:, None] == classes[None], axis=(2, 3))  # [S, S]
    return int(np.argmin(agreement.sum(axis=1)))


def replicate_pair(ensemble: TrainedEnsemble, dataset: Dataset, key: jax.Array,
                   replicates: int, heads: tuple[int, int], desc: str = "pair"
                   ) -> TrainedEnsemble:
    """`ensemble` with its joint DivDis pair `heads` trained `replicates` times in all.

    The diversity term asks a pair for two heads independent on the target; with two classes
    that is one equation, which heads mixing the two features in part also solve (23: one
    start reaches 0.77 where another reaches 0.94 on the same set), and each start mixes on
    other rows. Each further start is a two-head DivDis ensemble from `fold_in(key, r)`; its
    heads are matched to the pair's by their agreement on the target rows (no label: the
    pair's features are independent there, so a replica follows one order or the other), and
    the pair's probabilities become the mean of the starts'. With three or more starts and
    `Config.pair_drop_outlier`, the start that agrees least with the others is left out of
    the mean: a start that mixed the features on many rows (23 relu, seed 6: one start 0.69
    where the other two reach 0.81 and 0.91) would pull the mean towards its mixture. Where
    the pair's heads see one block each (`masks`), a replica's heads see the same blocks in
    the same order.

    Returns:
      The ensemble, unchanged if `replicates` <= 1; the timings include the replicas'.
    """
    if replicates <= 1:
        return ensemble
    pair = list(heads)
    reference = ensemble.predict_proba(dataset.x_target)[pair].argmax(-1)
    pair_config = ensemble.config.replace(strategy="divdis", num_heads=2)
    masks = None if ensemble.masks is None else ensemble.masks[pair]
    priors = None if ensemble.priors is None else ensemble.priors[pair]
    replicas, swapped, classes = [], [], [reference]
    for r in range(1, replicates):
        replica = train(pair_config, dataset, jax.random.fold_in(key, r),
                        desc=f"{desc} (start {r + 1} of {replicates})", masks=masks,
                        priors=priors)
        replicas.append(replica)
        predicted = replica.predict_proba(dataset.x_target).argmax(-1)
        swapped.append(masks is None and pair_swapped(reference, predicted))
        classes.append(predicted[::-1] if swapped[-1] else predicted)
    averaged = list(range(replicates))
    if ensemble.config.pair_drop_outlier and replicates >= 3:
        averaged.remove(least_agreeing(np.stack(classes)))
    return dataclasses.replace(
        ensemble, replicas=tuple(replicas), replicated=tuple(heads), swapped=tuple(swapped),
        averaged=tuple(averaged),
        compile_seconds=ensemble.compile_seconds + sum(r.compile_seconds for r in replicas),
        train_seconds=ensemble.train_seconds + sum(r.train_seconds for r in replicas))


def as_member(config: Config, dataset: Dataset, x: np.ndarray, y: np.ndarray,
              classes: np.ndarray | None = None) -> tuple[Config, Dataset]:
    """The configuration and data of one plain ERM member trained on rows (x, y) in place of the
    labeled ones: the data set's other rows still shape the input standardisation; its
    classes, or `classes`, the output."""
    rows = dataclasses.replace(dataset, x_labeled=x, y_labeled=np.asarray(y, np.int32),
                               classes=dataset.classes if classes is None else classes)
    return config.replace(strategy="erm", num_heads=1), rows


def train_member(config: Config, dataset: Dataset, x: np.ndarray, y: np.ndarray,
                 key: jax.Array | None = None, classes: np.ndarray | None = None,
                 desc: str = "training one member",
                 masks: np.ndarray | None = None) -> TrainedEnsemble:
    """One plain ERM member trained on rows (x, y) (`as_member`: the refinement's student, the
    shift test's anchor stand-in, the supervised ceilings); `masks` [1, *S], its input mask,
    as in `train`."""
    return train(*as_member(config, dataset, x, y, classes), key, desc, masks)
