"""The measuring half of the recipe: short probes on a task.

Two probes, both from the task's initial parameters and on batches drawn
with a seeded generator: the LR range test (:func:`lrjax.finder.
lr_range_test`) at a probe batch, and a short run at the suggested LR that
measures the gradient noise scale B_simple with sliced batches
(:func:`lrjax.noise.sliced_sq_norms`, :func:`lrjax.noise.update`).
:func:`recommend` runs both and hands the measurements to
:func:`lrjax.recipe.decide`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax import finder
from lrjax import noise as lnoise
from lrjax.recipe._decide import Budget, Recipe, batch_range, decide


class NoiseProbe(NamedTuple):
  """Result of :func:`probe_noise`.

  Attributes:
    b_simple: B_simple from the moving averages after the last update.
    trace: the averaged tr(Sigma) estimate.
    g2: the averaged |G|^2 estimate.
    history: B_simple after each update.
    examples: examples consumed.
  """

  b_simple: float
  trace: float
  g2: float
  history: np.ndarray
  examples: int


def batches(
  task: Any, batch_size: int, seed: int
) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches of the task's training data, reshuffled each epoch.

  Args:
    task: a :class:`lrjax.train.Task`.
    batch_size: examples per batch (at most the training set's size).
    seed: the shuffle's seed.

  Yields:
    Dicts of numpy arrays with a leading axis ``batch_size``.

  Raises:
    ValueError: if ``batch_size`` is not in [1, N].
  """
  n = task.num_train
  if not 1 <= batch_size <= n:
    raise ValueError(f'{batch_size=} must be in [1, N={n}]')
  rng = np.random.default_rng(seed)
  while True:
    order = rng.permutation(n)
    for i in range(n // batch_size):
      idx = np.sort(order[i * batch_size : (i + 1) * batch_size])
      yield {k: np.asarray(v) for k, v in task.train_data.take(idx).items()}


def _loss_fn(task: Any, model_state: Any, key: jax.Array):
  """``loss(params, batch)`` in training mode at a fixed model state.

  Training mode normalises with batch statistics, so the loss does not read
  the running averages held in the model state; keeping it fixed leaves
  the probes with parameters only (what the range test updates).
  """

  def loss(params, batch):
    value, _ = task.train_loss(params, model_state, batch, key)
    return value

  return loss


def _mesh(num_devices: int) -> jax.sharding.Mesh:
  """A one-axis ('batch') mesh of the first ``num_devices`` local devices.

  Raises:
    ValueError: unless 1 <= num_devices <= the local devices.
  """
  devices = jax.local_devices()
  if not 1 <= num_devices <= len(devices):
    raise ValueError(
      f'{num_devices=} must be in [1, {len(devices)}] (the local devices; '
      "on CPU, simulate more with jax.config.update('jax_num_cpu_devices', "
      'N) before any JAX operation)'
    )
  return jax.sharding.Mesh(np.array(devices[:num_devices]), ('batch',))


def _check_split(batch_size: int, num_devices: int) -> None:
  if num_devices < 1 or batch_size % num_devices:
    raise ValueError(
      f'batch_size={batch_size} must be a multiple of {num_devices=} (the '
      'global batch is split evenly across the devices)'
    )


def _data_parallel(loss: Any, num_devices: int) -> Any:
  """``loss`` over a global batch split evenly across devices.

  Each device computes the mean loss of its shard and the means are
  averaged (``pmean``): with equal shards this is the global batch's mean
  loss, and its gradient the all-reduced gradient of data parallelism (as
  the trainer's). One device: ``loss`` itself.
  """
  if num_devices == 1:
    return loss
  spec = jax.sharding.PartitionSpec

  def local(params, batch):
    return jax.lax.pmean(loss(params, batch), 'batch')

  return jax.shard_map(
    local,
    mesh=_mesh(num_devices),
    in_specs=(spec(), spec('batch')),
    out_specs=spec(),
  )


def _optimizer(
  name: str, momentum: float, weight_decay: float, b2: float = 0.999
):
  from lrjax.train import make_optimizer

  def factory(lr):
    return make_optimizer(
      name,
      learning_rate=lr,
      momentum=momentum,
      weight_decay=weight_decay,
      b2=b2,
    )

  return factory


def probe_lr(
  task: Any,
  *,
  batch_size: int,
  optimizer: str = 'sgd',
  momentum: float = 0.9,
  weight_decay: float = 0.0,
  b2: float = 0.999,
  num_steps: int = 100,
  min_lr: float = 1e-5,
  max_lr: float = 10.0,
  beta: float = 0.98,
  suggestion: str = 'minimum_over_10',
  num_devices: int = 1,
  seed: int = 0,
  data: Iterable[Any] | None = None,
  strict: bool = True,
) -> tuple[float, finder.RangeTestResult]:
  """The LR range test on a task at one batch size.

  Args:
    task: a :class:`lrjax.train.Task`.
    batch_size: the probe batch.
    optimizer: 'sgd', 'nesterov', 'adam', 'adamw', 'lamb' or 'lars'.
    momentum: momentum (Adam's b1).
    weight_decay: weight decay.
    b2: the Adam family's second-moment decay.
    num_steps: updates of the sweep.
    min_lr: the sweep's first LR.
    max_lr: the sweep's last LR.
    beta: the EMA decay of the smoothed loss (:func:`lrjax.finder.smooth`).
    suggestion: which of :func:`lrjax.finder.suggest`'s suggestions to
      return.
    num_devices: devices the global ``batch_size`` is split across (data
      parallel, as the trainer; the range test reads each update's loss,
      so one step is in flight at a time).
    seed: the parameters' seed, and the data order's when ``data`` is
      None.
    data: the batches of ``batch_size`` examples to sweep on, in order
      (None: :func:`batches` of the task, shuffled with ``seed``), e.g.
      the trainer's order (:class:`lrjax.data.Sampler`).
    strict: raise when the sweep stopped before two updates (it has no
      suggestion); False returns the suggestion as NaN.

  Returns:
    ``(lr, result)``: the suggested LR and the whole range test.

  Raises:
    ValueError: for an unknown ``suggestion``, a batch the devices do not
      divide, too few devices, or (``strict``) a sweep that stopped before
      two updates (no suggestion; lower ``min_lr``).

  Examples:
    >>> import numpy as np
    >>> from lrjax import train
    >>> # loss(w) = mean((w x - 2 x)^2) = (w - 2)^2 on x = +-1, from w = 0.
    >>> batch = {'x': np.array([[1.0], [-1.0]], np.float32)}
    >>> task = train.Task(
    ...   model=(lambda key, x: np.zeros(1, np.float32), lambda w, x: w * x),
    ...   loss=lambda y, b: (((y - 2 * b['x']) ** 2).mean(), {}),
    ...   train_data=batch,
    ...   inputs='x',
    ... )
    >>> # Updates at LR 0.1, 0.2: w = 0 - 0.1 * 2 (0 - 2) = 0.4, loss 1.6^2.
    >>> lr, r = probe_lr(task, batch_size=2, momentum=0.0, num_steps=2,
    ...                  min_lr=0.1, max_lr=0.2, data=[batch, batch])
    >>> print(r.losses.round(4).tolist(), round(lr, 4))  # 0.2 / 10
    [4.0, 2.56] 0.02
    >>> # One batch, one update: no suggestion, NaN unless strict.
    >>> lr, r = probe_lr(task, batch_size=2, num_steps=2, min_lr=0.1,
    ...                  max_lr=0.2, data=[batch], strict=False)
    >>> print(lr, r.losses.tolist())
    nan [4.0]
  """
  if suggestion not in finder.SUGGESTIONS:
    raise ValueError(f'{suggestion=} must be one of {finder.SUGGESTIONS}')
  _check_split(batch_size, num_devices)
  key = jax.random.key(seed)
  params, model_state = task.init(key)
  result = finder.lr_range_test(
    _data_parallel(
      _loss_fn(task, model_state, jax.random.fold_in(key, 1)), num_devices
    ),
    params,
    _optimizer(optimizer, momentum, weight_decay, b2),
    batches(task, batch_size, seed) if data is None else data,
    min_lr=min_lr,
    max_lr=max_lr,
    num_steps=num_steps,
    beta=beta,
  )
  lr = result.suggestions[suggestion]
  if strict and not np.isfinite(lr):
    raise ValueError(
      f'the range test diverged after {len(result.lrs)} update(s) at '
      f'lr={result.lrs[-1]:.3g}: lower min_lr={min_lr}'
    )
  return float(lr), result


def probe_noise(
  task: Any,
  *,
  lr: float,
  batch_size: int,
  num_slices: int = 4,
  num_updates: int = 50,
  warm_updates: int = 0,
  optimizer: str = 'sgd',
  momentum: float = 0.9,
  weight_decay: float = 0.0,
  b2: float = 0.999,
  decay: float | None = None,
  num_devices: int = 1,
  seed: int = 0,
) -> NoiseProbe:
  """Measures B_simple over a short run at a constant LR.

  The first ``warm_updates`` updates only train (the noise scale is
  smallest at initialisation and grows as the loss falls: McCandlish et
  al. 2018, figure 4; a probe from initialisation underestimates the
  B_simple of the run it plans); the others also measure. Each measuring
  update splits its batch of B into k slices: :math:`B_s = B/k`,
  :math:`B_b = B` (:func:`lrjax.noise.sliced_sq_norms`), adds the pair
  of squared norms to the averages (:func:`lrjax.noise.update`,
  finite-population corrected) and applies the batch gradient. By default
  the averages are plain means over the measuring updates (the decay of
  the t-th is t/(t+1)): a short probe has few estimates, and an EMA's
  window (about 1/(1-decay) updates) would use only the last of them.

  On :math:`R > 1` devices the probe runs data parallel, as the trainer
  does: each device takes :math:`b = B/R` examples of the global batch and
  the devices' gradients are the small batches
  (:func:`lrjax.noise.data_parallel_grad`: :math:`B_s = b`, :math:`B_b =
  B`); ``num_slices`` is then not used. With :math:`R = k` this is the
  one-device estimator on the same batches (the slices are the devices'
  shards), equal up to float round-off.

  Args:
    task: a :class:`lrjax.train.Task`.
    lr: the constant LR of the run.
    batch_size: B, divisible by ``num_slices``.
    num_slices: k >= 2.
    num_updates: updates of the run (>= 1), the warm ones included.
    warm_updates: updates at the start that train without measuring, in
      [0, num_updates).
    optimizer: the optimizer's name.
    momentum: momentum (Adam's b1).
    weight_decay: weight decay.
    b2: the Adam family's second-moment decay.
    decay: an EMA decay in [0, 1) for the averages (None: plain means).
    num_devices: R, devices of data parallelism.
    seed: parameters' and data order's seed.

  Returns:
    A :class:`NoiseProbe` (its history: after each measuring update; its
    examples: all updates').

  Raises:
    ValueError: for ``num_updates < 1``, ``warm_updates`` outside
      [0, num_updates), a batch ``num_slices`` (one
      device) or the devices do not divide, too few devices, or a
      non-positive averaged |G|^2 (the run is at a minimum or too short;
      raise ``num_updates``).

  References:
    McCandlish et al. 2018, "An Empirical Model of Large-Batch Training",
    appendix A.
  """
  if num_updates < 1:
    raise ValueError(f'{num_updates=} must be >= 1')
  if not 0 <= warm_updates < num_updates:
    raise ValueError(
      f'{warm_updates=} must be in [0, num_updates={num_updates}): at '
      'least one update must measure'
    )
  _check_split(batch_size, num_devices)
  if num_devices == 1 and (num_slices < 2 or batch_size % num_slices):
    raise ValueError(
      f'{num_slices=} must be >= 2 and divide batch_size={batch_size}'
    )
  key = jax.random.key(seed)
  params, model_state = task.init(key)
  loss = _loss_fn(task, model_state, jax.random.fold_in(key, 1))
  tx = _optimizer(optimizer, momentum, weight_decay, b2)(lr)
  opt_state = tx.init(params)
  if num_devices == 1:
    b_small = batch_size // num_slices

    def norms(p, batch):
      r = lnoise.sliced_sq_norms(jax.grad(loss), p, batch, num_slices)
      return r.grad, r.sq_norm_small, r.sq_norm_big

  else:
    b_small = batch_size // num_devices
    spec = jax.sharding.PartitionSpec

    def local(p, batch):
      r = lnoise.data_parallel_grad(loss, p, batch)
      return r.grad, r.sq_norm_small, r.sq_norm_big

    norms = jax.shard_map(
      local,
      mesh=_mesh(num_devices),
      in_specs=(spec(), spec('batch')),
      out_specs=(spec(), spec(), spec()),
    )

  @jax.jit
  def step(p, state, batch):
    grad, small, big = norms(p, batch)
    updates, state = tx.update(grad, state, p)
    return optax.apply_updates(p, updates), state, jnp.stack([small, big])

  n = task.num_train
  state = lnoise.init()
  history = []
  data = batches(task, batch_size, seed + 1)
  for u in range(num_updates):
    # Reading the norms waits for the step: one in flight (DESIGN.md).
    params, opt_state, pair = step(params, opt_state, next(data))
    t = u - warm_updates
    if t < 0:
      continue
    small, big = np.asarray(pair, np.float64)
    state = lnoise.update(
      state,
      small,
      big,
      b_small,
      batch_size,
      decay=t / (t + 1) if decay is None else decay,
      num_examples=n,
    )
    history.append(float(lnoise.b_simple(state)))
  g2, trace = (float(x) for x in lnoise.averages(state))
  if not g2 > 0:
    raise ValueError(
      f'the averaged |G|^2 estimate is {g2:.3g} <= 0 over '
      f'{num_updates - warm_updates} measuring updates: raise num_updates '
      '(or the batch) for a usable B_simple'
    )
  return NoiseProbe(
    b_simple=trace / g2,
    trace=trace,
    g2=g2,
    history=np.asarray(history),
    examples=num_updates * batch_size,
  )


def probe_step_seconds(
  task: Any,
  batch_sizes: tuple[int, ...],
  *,
  optimizer: str = 'sgd',
  momentum: float = 0.9,
  weight_decay: float = 0.0,
  b2: float = 0.999,
  lr: float = 1e-3,
  num_steps: int = 3,
  clock: Callable[[], float] = time.perf_counter,
  num_devices: int = 1,
  seed: int = 0,
) -> tuple[dict[int, float], int]:
  """Measures the seconds per training update at each batch size.

  For each size, one update compiles the step (not timed), then
  ``num_steps`` updates are timed one by one: drawing the batch from the
  training data (the host's share) and the step, waited for
  (``jax.block_until_ready``) so that the clock reads the device's work;
  the median is the size's time per update. Not counted: what the trainer
  adds around its steps (evaluations, logging, checkpoints), which on a
  small model can exceed the step itself, so that a wall-clock budget
  converts into more examples than the trainer gets through in that time.

  Args:
    task: a :class:`lrjax.train.Task`.
    batch_sizes: the batch sizes to time (each in [1, N]).
    optimizer: the optimizer's name.
    momentum: momentum (Adam's b1).
    weight_decay: weight decay.
    b2: the Adam family's second-moment decay.
    lr: the LR of the timed updates.
    num_steps: timed updates per size (>= 1).
    clock: seconds now (injected for tests).
    num_devices: devices each (global) batch is split across.
    seed: parameters' and data order's seed.

  Returns:
    ``({batch: seconds per update}, examples consumed)``.

  Raises:
    ValueError: for ``num_steps < 1``, a batch outside [1, N] or one the
      devices do not divide.
  """
  if num_steps < 1:
    raise ValueError(f'{num_steps=} must be >= 1')
  for b in batch_sizes:
    _check_split(int(b), num_devices)
  key = jax.random.key(seed)
  params0, model_state = task.init(key)
  loss = _data_parallel(
    _loss_fn(task, model_state, jax.random.fold_in(key, 1)), num_devices
  )
  tx = _optimizer(optimizer, momentum, weight_decay, b2)(lr)

  @jax.jit
  def step(p, state, batch):
    updates, state = tx.update(jax.grad(loss)(p, batch), state, p)
    return optax.apply_updates(p, updates), state

  seconds, examples = {}, 0
  for b in batch_sizes:
    data = batches(task, int(b), seed + 2)
    params, state = params0, tx.init(params0)
    params, state = jax.block_until_ready(step(params, state, next(data)))
    times = []
    for _ in range(num_steps):
      start = clock()
      params, state = jax.block_until_ready(step(params, state, next(data)))
      times.append(clock() - start)
    seconds[int(b)] = float(np.median(times))
    examples += (num_steps + 1) * int(b)
  return seconds, examples


def recommend(
  task: Any,
  budget: Budget,
  *,
  optimizer: str | None = None,
  momentum: float | None = None,
  weight_decay: float | None = None,
  b2: float | None = None,
  num_devices: int = 1,
  max_device_batch: int | None = None,
  max_accumulation: int = 1,
  probe_batch: int = 32,
  range_test_steps: int = 100,
  min_lr: float = 1e-5,
  max_lr: float = 10.0,
  noise_updates: int = 50,
  noise_warm_updates: int | None = None,
  num_slices: int = 4,
  suggestion: str = 'minimum_over_10',
  spread: float = 2.0,
  continuable: bool = False,
  timing_steps: int = 3,
  clock: Callable[[], float] = time.perf_counter,
  seed: int = 0,
) -> Recipe:
  """Runs the probes on a task and returns the recipe.

  1. The LR range test at ``probe_batch`` (:func:`probe_lr`): the LR
     :math:`\\eta_p`.
  2. A run of ``noise_updates`` at :math:`\\eta_p` from the initial
     parameters, measuring B_simple over its updates after the first
     ``noise_warm_updates`` (:func:`probe_noise`): the noise scale grows
     by orders of magnitude as the loss falls (McCandlish et al. 2018,
     figure 4), so B_simple measured at initialisation would plan the
     whole run for its first few updates; the warm updates move it to
     parameters that have trained at the LR the recipe will use, at no
     extra cost.
  3. :func:`lrjax.recipe.decide`: start batch and batch cap from B_simple
     and the hardware, the peak LR by the optimizer's scaling rule, Goyal's
     warmup, and the decay (Smith's ramp, WSD or cosine).

  The probes cost ``(range_test_steps + noise_updates) * probe_batch``
  examples (fewer if the range test stops on divergence), reported as a
  fraction of the budget (:attr:`Recipe.probe_fraction`).

  With ``num_devices`` :math:`R > 1` every probe runs data parallel on
  the first :math:`R` local devices, as the trainer: ``probe_batch`` is the
  global batch, split evenly, and the noise probe's small batches are the
  devices' shards (:func:`probe_noise`).

  For a wall-clock budget (``Budget(seconds=...)``) a third probe times
  ``timing_steps`` updates at the ends of the batch range the schedule
  will use, :math:`B_0` and :math:`\\min(B_{\\max}, R b)` (beyond one
  step of the device cap :math:`b` the trainer accumulates)
  (:func:`probe_step_seconds`, compilation excluded), and
  :func:`lrjax.recipe.decide` converts the seconds into examples. The
  cost is then in seconds: the probes' updates at the measured time per
  update.

  Args:
    task: a :class:`lrjax.train.Task` (``lrjax.tasks`` builds the named
      ones).
    budget: the training budget (:class:`Budget`).
    optimizer: the optimizer's name (None: 'sgd'); the recipe's scaling
      rule depends on it.
    momentum: momentum (None: 0.9).
    weight_decay: weight decay (None: 0).
    b2: the Adam family's second-moment decay (None: 0.999).
    num_devices: devices of data parallelism.
    max_device_batch: the largest per-device batch (None: no cap).
    max_accumulation: accumulation steps allowed beyond it.
    probe_batch: the probes' (global) batch, divisible by ``num_slices``
      on one device, by ``num_devices`` on several.
    range_test_steps: updates of the range test.
    min_lr: the range test's first LR.
    max_lr: the range test's last LR.
    noise_updates: updates of the noise probe.
    noise_warm_updates: its first updates, which train without measuring
      (None: half of ``noise_updates``, rounded down).
    num_slices: slices of each noise-probe batch.
    suggestion: the range test's suggestion to use.
    spread: see :func:`lrjax.recipe.decide`.
    continuable: prefer WSD over cosine.
    timing_steps: timed updates per batch size (wall-clock budgets).
    clock: seconds now, for the timing probe (injected for tests).
    seed: the probes' seed (the recipe is a function of it, and of the
      measured step times for a wall-clock budget).

  Returns:
    The :class:`Recipe`.

  Raises:
    ValueError: naming the argument, for bad arguments (see
      :func:`probe_lr`, :func:`probe_noise`, :func:`lrjax.recipe.decide`).
  """
  optimizer = 'sgd' if optimizer is None else optimizer
  momentum = 0.9 if momentum is None else momentum
  weight_decay = 0.0 if weight_decay is None else weight_decay
  b2 = 0.999 if b2 is None else b2
  budget.validate()  # before any probe runs
  lr, test = probe_lr(
    task,
    batch_size=probe_batch,
    optimizer=optimizer,
    momentum=momentum,
    weight_decay=weight_decay,
    b2=b2,
    num_steps=range_test_steps,
    min_lr=min_lr,
    max_lr=max_lr,
    suggestion=suggestion,
    num_devices=num_devices,
    seed=seed,
  )
  measured = probe_noise(
    task,
    lr=lr,
    batch_size=probe_batch,
    num_slices=num_slices,
    num_updates=noise_updates,
    warm_updates=(
      noise_updates // 2 if noise_warm_updates is None else noise_warm_updates
    ),
    optimizer=optimizer,
    momentum=momentum,
    weight_decay=weight_decay,
    b2=b2,
    num_devices=num_devices,
    seed=seed,
  )
  step_seconds, timing_examples = None, 0
  if budget.seconds is not None:
    # Time the ends of the range the schedule will use (one step of the
    # cap at most: larger batches accumulate micro-batches of that size).
    start, top, _ = batch_range(
      measured.b_simple,
      task.num_train,
      num_devices=num_devices,
      max_device_batch=max_device_batch,
      max_accumulation=max_accumulation,
      spread=spread,
    )
    if max_device_batch is not None:
      top = min(top, num_devices * max_device_batch)
    step_seconds, timing_examples = probe_step_seconds(
      task,
      tuple(sorted({start, top})),
      optimizer=optimizer,
      momentum=momentum,
      weight_decay=weight_decay,
      b2=b2,
      lr=lr,
      num_steps=timing_steps,
      clock=clock,
      num_devices=num_devices,
      seed=seed,
    )
  # The probes' updates by (global) batch: their cost in seconds.
  probe_updates = {probe_batch: len(test.lrs) + noise_updates}
  if step_seconds is not None:
    for b in step_seconds:
      probe_updates[b] = probe_updates.get(b, 0) + timing_steps + 1
  return decide(
    probe_lr=lr,
    probe_batch=probe_batch,
    b_simple=measured.b_simple,
    num_examples=task.num_train,
    budget=budget,
    optimizer=optimizer,
    momentum=momentum,
    b2=b2,
    num_devices=num_devices,
    max_device_batch=max_device_batch,
    max_accumulation=max_accumulation,
    spread=spread,
    continuable=continuable,
    probe_examples=len(test.lrs) * probe_batch
    + measured.examples
    + timing_examples,
    step_seconds=step_seconds,
    probe_updates=probe_updates,
  )


__all__ = [
  'NoiseProbe',
  'batches',
  'probe_lr',
  'probe_noise',
  'probe_step_seconds',
  'recommend',
]
