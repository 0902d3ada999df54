"""State-based policies: plateau rules as optax stateful schedules.

The decision rule, shared by both policies: the trainer passes
`value=<train loss of this update>` and `epoch=<float epoch at this update>`
to every `tx.update`. The policy sums the values seen during each epoch
(`floor(epoch)` constant) and decides ONCE per completed epoch, on the mean
of that epoch's values, at the first update whose `floor(epoch)` is larger
(like Keras / PyTorch monitoring an epoch metric). The decision already
applies to that first update of the new epoch: `__call__` rolls the epoch
over before giving the value. If one update skips whole epochs (a batch
larger than the dataset), the values seen since the last decision form one
decision. Non-finite values (updates the trainer skipped) are left out of
the mean; an epoch without any finite value makes no decision. Everything
is jit-safe: the state is a NamedTuple of arrays.
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
      'plateau policies need tx.update(..., value=<loss>, epoch=<epoch>): '
      f'got value={value!r}, epoch={epoch!r}'
    )


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
  min_value: float

  def init(self) -> ReduceOnPlateauState:
    return ReduceOnPlateauState(
      value=jnp.asarray(self.init_value, jnp.float32),
      best=jnp.asarray(jnp.inf, jnp.float32),
      num_bad_epochs=jnp.zeros([], jnp.int32),
      cooldown_counter=jnp.zeros([], jnp.int32),
      acc=_epoch0(),
    )

  def _decide(self, s: ReduceOnPlateauState, mean) -> ReduceOnPlateauState:
    # PyTorch's ReduceLROnPlateau.step order, mode='min'.
    if self.mode == 'rel':
      better = mean < s.best * (1.0 - self.threshold)
    else:
      better = mean < s.best - self.threshold
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

  def _rollover(self, state, epoch):
    done, mean, acc = _completed(state.acc, epoch)
    decided = self._decide(state, mean)
    state = jax.tree.map(lambda a, b: jnp.where(done, a, b), decided, state)
    return state._replace(acc=acc)

  def update(self, state, value=None, epoch=None, **extra_args):
    del extra_args
    _require(value, epoch)
    state = self._rollover(state, epoch)
    return state._replace(acc=_accumulate(state.acc, value))

  def __call__(self, state, value=None, epoch=None, **extra_args) -> jax.Array:
    del value, extra_args
    if epoch is not None:
      state = self._rollover(state, epoch)
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
        min_value=self.min_value,
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
  mode: str = 'rel',
  min_value: float = 0.0,
) -> ReduceOnPlateau:
  """Reduce the learning rate itself when the epoch loss stops improving.

  Decides once per completed epoch on the mean train loss of that epoch (the
  rule in this module's docstring), with PyTorch's `ReduceLROnPlateau`
  (mode='min') logic: an epoch mean :math:`a` is better than the best so far
  :math:`a^*` if

  .. math:: a < a^* (1 - \\theta) \\ (\\text{rel}) \\quad\\text{or}\\quad
    a < a^* - \\theta \\ (\\text{abs});

  after more than `patience` epochs without improvement the value becomes
  :math:`\\max(\\eta f, \\eta_{min})` (changes below 1e-8 are ignored), and
  the next `cooldown` epochs do not count as bad. Unlike
  `optax.contrib.reduce_on_plateau`, which scales the updates, this scales
  the learning rate, so the value in force is the hyperparameter that
  `optax.inject_hyperparams` records. PyTorch decides when the user calls
  `step(metric)`, typically on a validation metric; lrjax decides on the
  train loss per epoch, from the `value=` and `epoch=` the trainer passes.

  Args:
    value: the initial learning rate :math:`\\eta_0`.
    factor: :math:`f \\in (0, 1)`.
    patience: epochs without improvement tolerated (integer >= 0).
    cooldown: epochs after a reduction that do not count (integer >= 0).
    threshold: :math:`\\theta \\ge 0`.
    mode: `rel` or `abs` (PyTorch's threshold_mode).
    min_value: :math:`\\eta_{min} \\ge 0`, the floor.

  Returns:
    A stateful schedule (`init`, `update(state, value=, epoch=)`,
    `__call__`); text `reduce_on_plateau(value,...)`.

  Raises:
    ValueError: on a factor outside (0, 1), a negative count or threshold.

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
  mode = P.check_choice('mode', mode, ('rel', 'abs'))
  min_value = P.check_float('min_value', min_value, low=0)
  if min_value > value:
    raise ValueError(f'min_value={min_value} must be <= value={value}')
  return ReduceOnPlateau(
    value, factor, patience, cooldown, threshold, mode, min_value
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

  def _rollover(self, state, epoch):
    done, mean, acc = _completed(state.acc, epoch)
    decided = self._decide(state, mean, self._clock(state, epoch))
    state = jax.tree.map(lambda a, b: jnp.where(done, a, b), decided, state)
    return state._replace(acc=acc)

  def update(self, state, value=None, epoch=None, **extra_args):
    del extra_args
    _require(value, epoch)
    state = self._rollover(state, epoch)
    return state._replace(
      acc=_accumulate(state.acc, value), updates=state.updates + 1
    )

  def __call__(self, state, value=None, epoch=None, **extra_args) -> jax.Array:
    del value, extra_args
    if epoch is not None:
      state = self._rollover(state, epoch)
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
      ),
    )


@register('switch_on_plateau')
def switch_on_plateau(
  policies,
  window: int = 5,
  threshold: float = 0.05,
  cooldown: int = 5,
  clock: str = 'epoch',
  total: float | None = None,
  start: int = 0,
) -> SwitchOnPlateau:
  """Move to the next policy of a list when the epoch loss plateaus.

  LRBench's ChangeLROnPlateau. Decides once per completed epoch on the mean
  train loss of that epoch (the rule in this module's docstring). With the
  last :math:`n` (= `window`) epoch means :math:`a_1 .. a_n`, oldest first,
  training is on a plateau when more than :math:`n` epochs are complete and

  .. math:: \\max_{i < n} (a_i - a_{i+1}) < \\theta,

  i.e. no epoch in the window improved the loss by `threshold` (absolute).
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

  Returns:
    A stateful schedule (`init`, `update(state, value=, epoch=)`,
    `__call__`); text `switch_on_plateau(p1/p2/...,...)`.

  Raises:
    ValueError: on no policy, `window < 2`, a negative threshold.

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
  if total is not None:
    total = P.check_duration('total', total)
  start = _check_count('start', start)
  if start >= len(policies):
    raise ValueError(
      f'start={start} must be < the number of policies ({len(policies)})'
    )
  return SwitchOnPlateau(
    policies, window, threshold, cooldown, clock, total, start
  )
