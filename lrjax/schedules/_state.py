"""State-based policies: plateau rules as optax stateful schedules.

The decision rule, shared by both policies. Every `tx.update` passes
`value=<metric>` and `epoch=<float epoch at this update>` (optax's
`inject_hyperparams` hands both to the policy's `__call__` and `update`).
`value` is any scalar metric, to minimise (`mode='min'`: a loss) or to
maximise (`mode='max'`: an accuracy); what it holds is chosen by
`value_per`:

- `value_per='update'` (default): a metric of each update, such as the
  train loss of the update's batch. The policy sums the values seen during
  each epoch (`floor(epoch)` constant) and decides on their mean.
- `value_per='epoch'`: a metric measured once per epoch after it ended,
  such as a validation loss or accuracy (what PyTorch's
  `ReduceLROnPlateau.step(val_metric)` users pass after each epoch). The
  caller passes the latest measurement with every update (NaN before the
  first); the policy decides on the value passed with the first update of
  each new epoch, i.e. on the metric of the epoch that just ended, and
  ignores the others.

Either way the policy decides ONCE per completed epoch, at the first update
whose `floor(epoch)` is larger, and the decision already applies to that
update: `__call__` rolls the epoch over before giving the value (give
`__call__` the same `value=` and `epoch=` as `update`). If one update skips
whole epochs (a batch larger than the dataset), that is one decision.
Non-finite values (updates the trainer skipped, a metric not yet measured)
never enter a decision; an epoch without a finite value makes none.
Everything is jit-safe: the state is a NamedTuple of arrays.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lrjax.schedules import _policy as P
from lrjax.schedules._policy import Policy, register

_EPS = 1e-8  # PyTorch's ReduceLROnPlateau(eps): smaller changes are ignored.


class _Epoch(NamedTuple):
  epoch: jax.Array  # int32: the epoch whose values are being summed
  total: jax.Array  # float32: their sum
  count: jax.Array  # int32: how many


def _epoch0() -> _Epoch:
  return _Epoch(
    jnp.zeros([], jnp.int32),
    jnp.zeros([], jnp.float32),
    jnp.zeros([], jnp.int32),
  )


def _completed(acc: _Epoch, epoch) -> tuple[jax.Array, jax.Array, _Epoch]:
  """(done, mean of the completed epoch, accumulator for the new epoch)."""
  e = jnp.floor(jnp.asarray(epoch, jnp.float32)).astype(jnp.int32)
  new = e > acc.epoch
  done = new & (acc.count > 0)
  mean = acc.total / jnp.maximum(acc.count, 1).astype(jnp.float32)
  rolled = _Epoch(
    jnp.where(new, e, acc.epoch),
    jnp.where(new, 0.0, acc.total).astype(jnp.float32),
    jnp.where(new, 0, acc.count).astype(jnp.int32),
  )
  return done, mean, rolled


def _accumulate(acc: _Epoch, value) -> _Epoch:
  # A non-finite loss (a skipped update) does not enter the epoch mean.
  value = jnp.asarray(value, jnp.float32)
  finite = jnp.isfinite(value)
  return acc._replace(
    total=acc.total + jnp.where(finite, value, 0.0),
    count=acc.count + finite.astype(jnp.int32),
  )


def _require(value, epoch):
  if value is None or epoch is None:
    raise TypeError(
      'plateau policies need tx.update(..., value=<metric>, epoch=<epoch>) '
      f'(value: a loss or any metric): got value={value!r}, epoch={epoch!r}'
    )


def _decision(acc: _Epoch, epoch, value, value_per: str):
  """(decide now, the metric to decide on, accumulator for the new epoch)."""
  done, mean, rolled = _completed(acc, epoch)
  if value_per == 'update':
    return done, mean, rolled
  new = rolled.epoch != acc.epoch
  if value is None:
    return jnp.zeros_like(new), mean, rolled
  value = jnp.asarray(value, jnp.float32)
  return new & jnp.isfinite(value), value, rolled


def _better(a, best, mode: str, threshold_mode: str, threshold: float):
  """PyTorch ReduceLROnPlateau's `is_better`."""
  if mode == 'min':
    if threshold_mode == 'rel':
      return a < best * (1.0 - threshold)
    return a < best - threshold
  if threshold_mode == 'rel':
    return a > best * (1.0 + threshold)
  return a > best + threshold


def _check_modes(mode, value_per):
  if mode in ('rel', 'abs'):
    raise ValueError(
      f'mode={mode!r} is a threshold mode: write threshold_mode={mode!r} '
      "(mode is 'min' or 'max', as in PyTorch's ReduceLROnPlateau)"
    )
  mode = P.check_choice('mode', mode, ('min', 'max'))
  value_per = P.check_choice('value_per', value_per, ('update', 'epoch'))
  return mode, value_per


class ReduceOnPlateauState(NamedTuple):
  """State of `reduce_on_plateau`; `value` is the learning rate in force."""

  value: jax.Array
  best: jax.Array
  num_bad_epochs: jax.Array
  cooldown_counter: jax.Array
  acc: _Epoch


@dataclasses.dataclass(frozen=True)
class ReduceOnPlateau:
  """Stateful schedule built by `reduce_on_plateau` (see there)."""

  init_value: float
  factor: float
  patience: int
  cooldown: int
  threshold: float
  mode: str
  threshold_mode: str
  min_value: float
  value_per: str

  def init(self) -> ReduceOnPlateauState:
    worst = jnp.inf if self.mode == 'min' else -jnp.inf
    return ReduceOnPlateauState(
      value=jnp.asarray(self.init_value, jnp.float32),
      best=jnp.asarray(worst, jnp.float32),
      num_bad_epochs=jnp.zeros([], jnp.int32),
      cooldown_counter=jnp.zeros([], jnp.int32),
      acc=_epoch0(),
    )

  def _decide(self, s: ReduceOnPlateauState, mean) -> ReduceOnPlateauState:
    # PyTorch's ReduceLROnPlateau.step order.
    better = _better(
      mean, s.best, self.mode, self.threshold_mode, self.threshold
    )
    best = jnp.where(better, mean, s.best)
    bad = jnp.where(better, 0, s.num_bad_epochs + 1)
    in_cooldown = s.cooldown_counter > 0
    counter = jnp.where(in_cooldown, s.cooldown_counter - 1, s.cooldown_counter)
    bad = jnp.where(in_cooldown, 0, bad)
    reduce = bad > self.patience
    new = jnp.maximum(s.value * self.factor, self.min_value)
    value = jnp.where(reduce & (s.value - new > _EPS), new, s.value)
    return ReduceOnPlateauState(
      value=value.astype(jnp.float32),
      best=best.astype(jnp.float32),
      num_bad_epochs=jnp.where(reduce, 0, bad).astype(jnp.int32),
      cooldown_counter=jnp.where(reduce, self.cooldown, counter).astype(
        jnp.int32
      ),
      acc=s.acc,
    )

  def _rollover(self, state, epoch, value):
    done, metric, acc = _decision(state.acc, epoch, value, self.value_per)
    decided = self._decide(state, metric)
    state = jax.tree.map(lambda a, b: jnp.where(done, a, b), decided, state)
    return state._replace(acc=acc)

  def update(
    self, state: ReduceOnPlateauState, value=None, epoch=None, **extra_args
  ) -> ReduceOnPlateauState:
    """The state after an update that saw `value` at `epoch`."""
    del extra_args
    _require(value, epoch)
    state = self._rollover(state, epoch, value)
    return state._replace(acc=_accumulate(state.acc, value))

  def __call__(
    self, state: ReduceOnPlateauState, value=None, epoch=None, **extra_args
  ) -> jax.Array:
    """The learning rate for the update at `epoch` (after its decision)."""
    del extra_args
    if epoch is not None:
      state = self._rollover(state, epoch, value)
    return state.value

  def __str__(self) -> str:
    return P.format_call(
      'reduce_on_plateau',
      P.kept_args(
        'reduce_on_plateau',
        value=self.init_value,
        factor=self.factor,
        patience=self.patience,
        cooldown=self.cooldown,
        threshold=self.threshold,
        mode=self.mode,
        threshold_mode=self.threshold_mode,
        min_value=self.min_value,
        value_per=self.value_per,
      ),
    )


def _check_count(name, value, low=0):
  if isinstance(value, bool) or not float(value).is_integer() or value < low:
    raise ValueError(f'{name}={value!r} must be an integer >= {low}')
  return int(value)


@register('reduce_on_plateau')
def reduce_on_plateau(
  value: float,
  factor: float = 0.1,
  patience: int = 10,
  cooldown: int = 0,
  threshold: float = 1e-4,
  mode: str = 'min',
  threshold_mode: str = 'rel',
  min_value: float = 0.0,
  value_per: str = 'update',
) -> ReduceOnPlateau:
  """Reduce the learning rate itself when a metric stops improving.

  Decides once per completed epoch (the rule in this module's docstring) on
  the epoch mean of a per-update metric (`value_per='update'`, e.g. the
  train loss) or on a metric measured after each epoch (`value_per='epoch'`,
  e.g. a validation loss or accuracy), with PyTorch's `ReduceLROnPlateau`
  logic: a metric :math:`a` is better than the best so far :math:`a^*`
  (initially :math:`+\\infty` for `min`, :math:`-\\infty` for `max`) if

  .. math:: \\text{min: } a < a^* (1 - \\theta) \\ (\\text{rel}),
    \\ a < a^* - \\theta \\ (\\text{abs});\\quad
    \\text{max: } a > a^* (1 + \\theta) \\ (\\text{rel}),
    \\ a > a^* + \\theta \\ (\\text{abs});

  after more than `patience` epochs without improvement the value becomes
  :math:`\\max(\\eta f, \\eta_{min})` (changes below 1e-8 are ignored), and
  the next `cooldown` epochs do not count as bad. With `value_per='epoch'`
  the learning rates equal PyTorch's `ReduceLROnPlateau(mode, factor,
  patience, threshold, threshold_mode, cooldown, min_lr)` stepped with the
  same metric after each epoch. Unlike `optax.contrib.reduce_on_plateau`,
  which scales the updates, this scales the learning rate, so the value in
  force is the hyperparameter that `optax.inject_hyperparams` records.

  Args:
    value: the initial learning rate :math:`\\eta_0`.
    factor: :math:`f \\in (0, 1)`.
    patience: epochs without improvement tolerated (integer >= 0).
    cooldown: epochs after a reduction that do not count (integer >= 0).
    threshold: :math:`\\theta \\ge 0`.
    mode: `min` (a loss) or `max` (an accuracy), PyTorch's `mode`.
    threshold_mode: `rel` or `abs`, PyTorch's `threshold_mode`.
    min_value: :math:`\\eta_{min} \\ge 0`, the floor.
    value_per: `update` (decide on the epoch mean of the values) or
      `epoch` (decide on the value passed with the first update of each new
      epoch: a metric measured after the epoch).

  Returns:
    A stateful schedule (`init`, `update(state, value=, epoch=)`,
    `__call__`); text `reduce_on_plateau(value,...)`.

  Raises:
    ValueError: on a factor outside (0, 1), a negative count or threshold,
      a bad `mode`, `threshold_mode` or `value_per` (`mode='rel'` or `'abs'`
      names `threshold_mode`).

  Examples:
    >>> from lrjax import schedules
    >>> lr = schedules.reduce_on_plateau(0.1, factor=0.5, patience=0)
    >>> s = lr.init()
    >>> for epoch, loss in [(0.0, 1.0), (1.0, 2.0), (2.0, 2.0)]:
    ...   print(f'{float(lr(s, epoch=epoch)):.3f}')
    ...   s = lr.update(s, value=loss, epoch=epoch)
    0.100
    0.100
    0.050

    On a validation accuracy measured after each epoch (NaN before the
    first), as PyTorch's `scheduler.step(val_acc)` with `mode='max'`:

    >>> lr = schedules.reduce_on_plateau(
    ...   0.1, factor=0.5, patience=0, mode='max', value_per='epoch')
    >>> s = lr.init()
    >>> for epoch, acc in [(0.0, float('nan')), (1.0, 0.6), (2.0, 0.7),
    ...                    (3.0, 0.65)]:
    ...   print(f'{float(lr(s, value=acc, epoch=epoch)):.3f}', end=' ')
    ...   s = lr.update(s, value=acc, epoch=epoch)
    0.100 0.100 0.100 0.050

  References:
    PyTorch `torch.optim.lr_scheduler.ReduceLROnPlateau`; Keras
    `ReduceLROnPlateau`.
  """
  value = P.check_float('value', value, low=0)
  factor = P.check_float(
    'factor', factor, low=0, low_open=True, high=1, high_open=True
  )
  patience = _check_count('patience', patience)
  cooldown = _check_count('cooldown', cooldown)
  threshold = P.check_float('threshold', threshold, low=0)
  mode, value_per = _check_modes(mode, value_per)
  threshold_mode = P.check_choice(
    'threshold_mode', threshold_mode, ('rel', 'abs')
  )
  min_value = P.check_float('min_value', min_value, low=0)
  if min_value > value:
    raise ValueError(f'min_value={min_value} must be <= value={value}')
  return ReduceOnPlateau(
    value,
    factor,
    patience,
    cooldown,
    threshold,
    mode,
    threshold_mode,
    min_value,
    value_per,
  )


class SwitchOnPlateauState(NamedTuple):
  """State of `switch_on_plateau`; `index` is the policy in force."""

  index: jax.Array
  history: jax.Array  # the last `window` epoch means, oldest first
  num_epochs: jax.Array
  cooldown_counter: jax.Array
  updates: jax.Array
  acc: _Epoch


@dataclasses.dataclass(frozen=True)
class SwitchOnPlateau:
  """Stateful schedule built by `switch_on_plateau` (see there)."""

  policies: tuple[Policy, ...]
  window: int
  threshold: float
  cooldown: int
  clock: str
  total: float | None
  start: int
  mode: str
  value_per: str

  def init(self) -> SwitchOnPlateauState:
    return SwitchOnPlateauState(
      index=jnp.asarray(self.start, jnp.int32),
      history=jnp.zeros([self.window], jnp.float32),
      num_epochs=jnp.zeros([], jnp.int32),
      cooldown_counter=jnp.zeros([], jnp.int32),
      updates=jnp.zeros([], jnp.int32),
      acc=_epoch0(),
    )

  def _decide(self, s: SwitchOnPlateauState, mean, t):
    history = jnp.concatenate([s.history[1:], mean[None].astype(jnp.float32)])
    num = s.num_epochs + 1
    gains = history[:-1] - history[1:]
    if self.mode == 'max':
      gains = -gains
    trapped = (num > self.window) & (jnp.max(gains) < self.threshold)
    act = trapped & (s.cooldown_counter == 0)
    counter = jnp.where(
      act, self.cooldown, jnp.maximum(s.cooldown_counter - 1, 0)
    )
    step = 1
    if self.total is not None:
      step = jnp.where(t < 0.8 * self.total, -1, 1)
    moved = jnp.clip(s.index + step, 0, len(self.policies) - 1)
    index = jnp.where(act, moved, s.index)
    return s._replace(
      index=index.astype(jnp.int32),
      history=history,
      num_epochs=num,
      cooldown_counter=counter.astype(jnp.int32),
    )

  def _clock(self, state, epoch):
    if self.clock == 'update':
      return state.updates
    if epoch is None:
      return state.acc.epoch
    return jnp.asarray(epoch, jnp.float32)

  def _rollover(self, state, epoch, value):
    done, metric, acc = _decision(state.acc, epoch, value, self.value_per)
    decided = self._decide(state, metric, self._clock(state, epoch))
    state = jax.tree.map(lambda a, b: jnp.where(done, a, b), decided, state)
    return state._replace(acc=acc)

  def update(
    self, state: SwitchOnPlateauState, value=None, epoch=None, **extra_args
  ) -> SwitchOnPlateauState:
    """The state after an update that saw `value` at `epoch`."""
    del extra_args
    _require(value, epoch)
    state = self._rollover(state, epoch, value)
    return state._replace(
      acc=_accumulate(state.acc, value), updates=state.updates + 1
    )

  def __call__(
    self, state: SwitchOnPlateauState, value=None, epoch=None, **extra_args
  ) -> jax.Array:
    """The value for the update at `epoch` (after its decision)."""
    del extra_args
    if epoch is not None:
      state = self._rollover(state, epoch, value)
    t = self._clock(state, epoch)
    vals = [p(t) for p in self.policies]
    return jnp.select(
      [state.index == i for i in range(len(vals))], vals
    ).astype(jnp.float32)

  def __str__(self) -> str:
    return P.format_call(
      'switch_on_plateau',
      P.kept_args(
        'switch_on_plateau',
        policies=self.policies,
        window=self.window,
        threshold=self.threshold,
        cooldown=self.cooldown,
        clock=self.clock,
        total=self.total,
        start=self.start,
        mode=self.mode,
        value_per=self.value_per,
      ),
    )


def _clock_unit(args: dict) -> str:
  return args['clock']


@register('switch_on_plateau', durations={'total': 'time'}, unit=_clock_unit)
def switch_on_plateau(
  policies,
  window: int = 5,
  threshold: float = 0.05,
  cooldown: int = 5,
  clock: str = 'epoch',
  total: float | None = None,
  start: int = 0,
  mode: str = 'min',
  value_per: str = 'update',
) -> SwitchOnPlateau:
  """Move to the next policy of a list when a metric plateaus.

  LRBench's ChangeLROnPlateau. Decides once per completed epoch (the rule in
  this module's docstring) on the epoch mean of a per-update metric
  (`value_per='update'`, e.g. the train loss) or on a metric measured after
  each epoch (`value_per='epoch'`, e.g. a validation metric). With the last
  :math:`n` (= `window`) epoch metrics :math:`a_1 .. a_n`, oldest first,
  training is on a plateau when more than :math:`n` epochs are complete and

  .. math:: \\max_{i < n} (a_i - a_{i+1}) < \\theta \\ (\\text{min})
    \\quad\\text{or}\\quad \\max_{i < n} (a_{i+1} - a_i) < \\theta
    \\ (\\text{max}),

  i.e. no epoch in the window improved the metric by `threshold` (absolute;
  lower is better for `mode='min'`, higher for `mode='max'`).
  On a plateau, unless `cooldown` epochs have not yet passed since the last
  switch, the next policy takes over (the last one stays). The policies are
  evaluated at the global t (epochs, or updates with `clock='update'`), not
  at a clock restarted by the switch, as in LRBench. Direction: without
  `total`, always forward (to the policy with the lower learning rate when
  the list is ordered that way). With `total` (the training length in units
  of the clock), LRBench's rule: before `0.8 * total` move back to the
  previous policy ("increase"), after it move forward ("decrease"); start
  in the middle of the list (`start`, LRBench's `start_index`) for the move
  back to have somewhere to go. LRBench counts iterations from 1, lrjax from 0.

  Args:
    policies: the policies, in order (text: separated by `/`).
    window: :math:`n \\ge 2` epochs compared (LRBench's
      metric_detection_iter).
    threshold: :math:`\\theta \\ge 0`, in loss units.
    cooldown: epochs after a switch before the next (integer >= 0).
    clock: `epoch` (t = the epoch passed in) or `update` (t = updates done).
    total: the training length for LRBench's back-then-forward rule, or None
      to always move forward.
    start: index of the policy in force at the start.
    mode: `min` (a loss) or `max` (an accuracy).
    value_per: `update` (epoch mean) or `epoch` (the value passed with the
      first update of each new epoch).

  Returns:
    A stateful schedule (`init`, `update(state, value=, epoch=)`,
    `__call__`); text `switch_on_plateau(p1/p2/...,...)`.

  Raises:
    ValueError: on no policy, `window < 2`, a negative threshold, a bad
      `mode` or `value_per`, or policies whose unit is not the clock's
      (`in_updates` policies with `clock='epoch'`, `in_epochs` ones with
      `clock='update'`).

  Examples:
    >>> from lrjax import schedules
    >>> lr = schedules.switch_on_plateau(
    ...   [schedules.constant(0.1), schedules.constant(0.01)], window=2,
    ...   cooldown=0)
    >>> s = lr.init()
    >>> for epoch in range(5):
    ...   print(f'{float(lr(s, epoch=float(epoch))):.3f}', end=' ')
    ...   s = lr.update(s, value=1.0, epoch=float(epoch))
    0.100 0.100 0.100 0.010 0.010

  References:
    Wu et al. 2019, Demystifying Learning Rate Policies (LRBench); Jin et
    al. 2023, LRBench++.
  """
  policies = tuple(
    P.as_policy(f'policies[{i}]', p) for i, p in enumerate(P.as_tuple(policies))
  )
  if not policies:
    raise ValueError('switch_on_plateau needs at least one policy')
  window = _check_count('window', window, low=2)
  threshold = P.check_float('threshold', threshold, low=0)
  cooldown = _check_count('cooldown', cooldown)
  clock = P.check_choice('clock', clock, ('epoch', 'update'))
  unit = P.common_unit('switch_on_plateau', policies)
  if unit is not None and unit != clock:
    raise ValueError(
      f"switch_on_plateau: the policies count {unit}s but clock='{clock}': "
      f"use clock='{unit}' or build the policies in {clock}s"
    )
  mode, value_per = _check_modes(mode, value_per)
  if total is not None:
    total = P.check_duration('total', total)
  start = _check_count('start', start)
  if start >= len(policies):
    raise ValueError(
      f'start={start} must be < the number of policies ({len(policies)})'
    )
  return SwitchOnPlateau(
    policies,
    window,
    threshold,
    cooldown,
    clock,
    total,
    start,
    mode,
    value_per,
  )
