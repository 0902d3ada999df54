"""Builders of batch schedules: Smith's and Seesaw's ramps, linear/geometric
ramps, cyclic."""

from __future__ import annotations

import dataclasses
import fractions
import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

from lrjax import rules, schedules
from lrjax.batch._schedule import BatchSchedule, Stage, _as_fraction


def _finite_positive(x, name: str) -> float:
  if isinstance(x, bool) or not isinstance(x, numbers.Real):
    raise TypeError(f'{name}={x!r} must be a number')
  if not (math.isfinite(x) and x > 0):
    raise ValueError(f'{name}={x!r} must be finite and > 0')
  return float(x)


def _positive_int(x, name: str) -> int:
  if isinstance(x, bool) or not isinstance(x, numbers.Integral):
    raise TypeError(f'{name}={x!r} must be an int')
  if x < 1:
    raise ValueError(f'{name}={x!r} must be >= 1')
  return int(x)


def round_batch_size(
  batch_size: float, multiple_of: int = 1, max_batch_size: int | None = None
) -> int:
  """Rounds a batch size to a realisable one.

  The rule: the nearest positive multiple of ``multiple_of`` (ties round up),
  at least ``multiple_of``, and at most the largest multiple of
  ``multiple_of`` not above ``max_batch_size`` (when given). ``multiple_of``
  is typically replicas x micro-batch granularity.

  .. math::
    B_r = \\mathrm{clip}\\left(k \\left\\lfloor \\frac{B}{k} + \\frac12
      \\right\\rfloor,\\; k,\\; k \\left\\lfloor \\frac{B_{\\max}}{k}
      \\right\\rfloor\\right).

  Args:
    batch_size: the ideal batch size, finite and > 0.
    multiple_of: k >= 1.
    max_batch_size: optional cap (e.g. the dataset size), >= multiple_of.

  Returns:
    The realisable batch size, an int.

  Examples:
    >>> from lrjax.batch import round_batch_size
    >>> round_batch_size(3200, 24), round_batch_size(12, 8), round_batch_size(1, 8)
    (3192, 16, 8)
  """
  b = _finite_positive(batch_size, 'batch_size')
  k = _positive_int(multiple_of, 'multiple_of')
  rounded = max(k, k * math.floor(b / k + 0.5))
  if max_batch_size is not None:
    cap = k * (_positive_int(max_batch_size, 'max_batch_size') // k)
    if cap < k:
      raise ValueError(
        f'max_batch_size={max_batch_size} is below multiple_of={k}: no '
        'realisable batch size'
      )
    rounded = min(rounded, cap)
  return rounded


def round_schedule(
  schedule: BatchSchedule, multiple_of: int
) -> tuple[BatchSchedule, tuple[float, ...]]:
  """Rounds every stage of a schedule to a realisable batch size.

  Each stage keeps its duration (in the unit it was given) and gets
  ``round_batch_size(batch_size, multiple_of, num_examples)``. At a constant
  learning rate and momentum the noise scale changes by

  .. math::
    \\frac{g_\\mathrm{new}}{g_\\mathrm{old}} = \\frac{B}{B_r}
    \\quad (B \\ll N \\text{ form}),

  which is returned per stage (1.0 where nothing changed).

  Args:
    schedule: the BatchSchedule.
    multiple_of: e.g. the number of replicas (times a micro-batch unit).

  Returns:
    ``(rounded schedule, g ratio per stage)``.

  Examples:
    >>> from lrjax.batch import parse, round_schedule
    >>> s, ratios = round_schedule(parse('stages(100@1,250@1,n=1000)'), 8)
    >>> print(s, [round(r, 4) for r in ratios])
    stages(104@1,248@1,n=1000) [0.9615, 1.0081]
  """
  if not isinstance(schedule, BatchSchedule):
    raise TypeError(f'schedule={schedule!r} must be a BatchSchedule')
  k = _positive_int(multiple_of, 'multiple_of')
  stages, ratios = [], []
  for stage in schedule.stages:
    b = round_batch_size(stage.batch_size, k, schedule.num_examples)
    stages.append(dataclasses.replace(stage, batch_size=b))
    ratios.append(stage.batch_size / b)
  return BatchSchedule(tuple(stages), schedule.num_examples), tuple(ratios)


class LrDecayRamp(NamedTuple):
  """Result of :func:`from_lr_decay`.

  Attributes:
    batch_schedule: the batch ramp (a BatchSchedule).
    lr: the learning-rate policy over epochs that goes with it (constant
      while the batch grows; decaying once the batch is capped).
    momentum: the momentum to train with.
    noise_scale_ratio: per stage, the realised g over the g of the LR-decay
      schedule it replaces (1.0 unless rounding the batch size changed it).
  """

  batch_schedule: BatchSchedule
  lr: schedules.Policy
  momentum: float
  noise_scale_ratio: tuple[float, ...]


def _round12(x: float) -> float:
  """x to 12 significant digits: a derived LR or factor whose text reads
  ``0.9``, not the float product's ``0.8999999999999999``."""
  return float(f'{x:.12g}')


def _fraction_to_number(f: fractions.Fraction):
  return int(f) if f.denominator == 1 else float(f)


def from_lr_decay(
  lr: float,
  batch_size: int,
  num_examples: int,
  *,
  milestones: Sequence[float],
  factors: float | Sequence[float],
  num_epochs: float,
  momentum: float = 0.0,
  max_batch_size: int | None = None,
  lr_scale: float = 1.0,
  new_momentum: float | None = None,
  multiple_of: int = 1,
  exact: bool = False,
) -> LrDecayRamp:
  """The batch ramp equivalent to an LR step decay (Smith et al. 2018).

  The LR-decay schedule it replaces trains at batch :math:`B` with LR
  :math:`\\epsilon_i = \\epsilon \\prod_{j \\le i} f_j` after the i-th
  milestone. Its noise scale :math:`g_i` (see :func:`lrjax.rules.noise_scale`)
  is kept stage by stage while the LR stays constant, by growing the batch:

  .. math::
    B_i = \\frac{\\epsilon' N}{g_i (1 - m')}
      = B \\frac{\\epsilon'}{\\epsilon} \\frac{1 - m}{1 - m'}
        \\prod_{j \\le i} \\frac{1}{f_j}
    \\quad (B \\ll N \\text{ form}),

  with :math:`\\epsilon' = ` ``lr_scale`` :math:`\\epsilon` and :math:`m' =`
  ``new_momentum`` (the paper's "increased initial learning rate" and
  "increased momentum" variants; both grow the batch from the start). Once
  :math:`B_i` would exceed ``max_batch_size`` (default :math:`N/10`, the
  paper's advice) the batch stays at the cap and the LR decays by the
  remaining factor, :math:`\\epsilon_i = g_i (1 - m') B_\\max / N` (Smith
  et al.'s *hybrid* is the cap at the first grown batch, 640 on CIFAR-10).
  ``max_batch_size=batch_size`` gives back the plain LR-decay schedule
  (constant batch), ``max_batch_size=num_examples`` the pure increasing-batch
  schedule.

  **Rounding.** Each ideal :math:`B_i` is rounded with
  :func:`round_batch_size` to a multiple of ``multiple_of``. Below the cap the
  LR stays constant, so rounding changes g by the factor reported in
  ``noise_scale_ratio``; at the cap the LR is solved for the realised batch,
  so g is kept exactly. The derived LRs (:math:`\\epsilon'` and the policy's
  decay factors) are rounded to 12 significant digits, so that the policy's
  text form reads ``constant(0.9)`` rather than the float product's
  ``constant(0.8999999999999999)``; ``noise_scale_ratio`` is computed with
  the rounded values.

  Args:
    lr: the initial LR :math:`\\epsilon` of the decay schedule.
    batch_size: its (constant) batch size :math:`B`.
    num_examples: dataset size :math:`N`.
    milestones: increasing epochs in (0, num_epochs) at which the LR decays.
    factors: the decay factor at each milestone (one number for all), in
      (0, 1] (0.2 = divide by 5).
    num_epochs: total training length in epochs.
    momentum: the decay schedule's momentum :math:`m`.
    max_batch_size: the cap; None means ``num_examples // 10``.
    lr_scale: multiply the constant LR by this (and the batch with it).
    new_momentum: train with this momentum instead (batch scaled by
      :math:`(1-m)/(1-m')`); None keeps ``momentum``.
    multiple_of: realisable batch sizes are multiples of this (replicas times
      micro-batch granularity).
    exact: keep the exact :math:`g = \\epsilon (N/B - 1)/(1 - m)` instead of
      the :math:`B \\ll N` form.

  Returns:
    An :class:`LrDecayRamp` (batch_schedule, lr policy over epochs, momentum,
    noise_scale_ratio per stage).

  Raises:
    ValueError: naming the argument, for unsorted or out-of-range milestones,
      factors outside (0, 1], sizes < 1 or a batch above the
      dataset size.

  Examples:
    Smith et al.'s CIFAR-10 setting (LR /5 at epochs 60, 120, 160). With the
    default cap N/10 = 5000 the batch grows to the cap and the LR takes the
    remaining factor 16000/5000 = 3.2:

    >>> from lrjax.batch import from_lr_decay
    >>> r = from_lr_decay(0.1, 128, 50000, milestones=(60, 120, 160),
    ...                   factors=0.2, num_epochs=200, momentum=0.9)
    >>> print(r.batch_schedule)
    stages(128@60,640@60,3200@40,5000@40,n=50000)
    >>> print(r.lr)
    multistep(0.1,milestones=160,gamma=0.3125)

    The paper's "hybrid" grows the batch once, 128 -> 640, then decays
    the LR at the later milestones: a cap of 640 (34,376 updates; the
    decaying LR takes 78,125, the paper's "~80k"):

    >>> r = from_lr_decay(0.1, 128, 50000, milestones=(60, 120, 160),
    ...                   factors=0.2, num_epochs=200, momentum=0.9,
    ...                   max_batch_size=640)
    >>> print(r.batch_schedule, r.lr)
    stages(128@60,640@140,n=50000) multistep(0.1,milestones=120/160,gamma=0.2)
    >>> r.batch_schedule.num_updates
    34376

    Growing the batch twice (x5 to 3200) before the LR decays is another
    schedule, between the hybrid and the pure increasing batch (28,876
    updates with no cap, the paper's "~29k"):

    >>> r = from_lr_decay(0.1, 128, 50000, milestones=(60, 120, 160),
    ...                   factors=0.2, num_epochs=200, momentum=0.9,
    ...                   max_batch_size=3200)
    >>> print(r.batch_schedule, r.lr, r.batch_schedule.num_updates)
    stages(128@60,640@60,3200@80,n=50000) multistep(0.1,milestones=160,gamma=0.2) 29376

    The paper's increased-initial-LR and increased-momentum variants cap
    the batch at 5120: 6,407 and 2,305 updates (the paper's "~6.5k" and
    "< 2.5k"):

    >>> kw = dict(milestones=(60, 120, 160), factors=0.2, num_epochs=200,
    ...           momentum=0.9, max_batch_size=5120, lr_scale=5)
    >>> lr5 = from_lr_decay(0.1, 128, 50000, **kw)
    >>> m98 = from_lr_decay(0.1, 128, 50000, new_momentum=0.98, **kw)
    >>> print(lr5.batch_schedule, lr5.batch_schedule.num_updates)
    stages(640@60,3200@60,5120@80,n=50000) 6407
    >>> print(m98.batch_schedule, m98.batch_schedule.num_updates)
    stages(3200@60,5120@140,n=50000) 2305

  References:
    Smith, Kindermans, Ying, Le. Don't Decay the Learning Rate, Increase the
    Batch Size. ICLR 2018, sections 3 and 5.
  """
  lr = _finite_positive(lr, 'lr')
  batch_size, num_examples, end = _start_and_length(
    batch_size, num_examples, num_epochs
  )
  if isinstance(milestones, (str, bytes)) or not isinstance(
    milestones, Sequence
  ):
    raise TypeError(f'milestones={milestones!r} must be a sequence of epochs')
  marks = [_as_fraction(m, 'milestones') for m in milestones]
  for a, b in zip([fractions.Fraction(0)] + marks, marks + [end], strict=True):
    if not a < b:
      raise ValueError(
        f'milestones={tuple(milestones)} must increase strictly within '
        f'(0, num_epochs={num_epochs})'
      )
  if isinstance(factors, numbers.Real):
    factors = [factors] * len(marks)
  factors = list(factors)
  if len(factors) != len(marks):
    raise ValueError(
      f'factors={factors} needs one factor per milestone ({len(marks)})'
    )
  factors = [_finite_positive(f, 'factors') for f in factors]
  if any(f > 1 for f in factors):
    # A factor above 1 would shrink the batch: almost always "5" written for
    # "divide by 5".
    raise ValueError(
      f'factors={factors} must each be in (0, 1]: they multiply the LR at '
      'the milestones, so 0.2 divides it by 5 (write 1/5, not 5)'
    )
  rules.effective_lr(lr, momentum)  # validates momentum
  m_new = momentum if new_momentum is None else new_momentum
  rules.effective_lr(lr, m_new)
  new_lr = _round12(lr * _finite_positive(lr_scale, 'lr_scale'))
  cap = num_examples // 10 if max_batch_size is None else max_batch_size
  cap = _positive_int(cap, 'max_batch_size')
  if cap > num_examples:
    raise ValueError(
      f'max_batch_size={cap} is above num_examples={num_examples}'
    )
  k = _positive_int(multiple_of, 'multiple_of')
  if cap < k:
    raise ValueError(f'max_batch_size={cap} is below multiple_of={k}')
  if exact and batch_size >= num_examples:
    raise ValueError(
      f'batch_size={batch_size} must be < num_examples with exact=True'
    )

  def g_of(eps, b, m):
    return rules.noise_scale(eps, b, num_examples, m, exact=exact)

  def batch_for(g):  # B that gives g at (new_lr, m_new)
    r = g * (1 - m_new) / new_lr
    return num_examples / (1 + r) if exact else num_examples / r

  def lr_for(g, b):  # LR that gives g at (b, m_new)
    q = num_examples / b - 1 if exact else num_examples / b
    return g * (1 - m_new) / q

  batches, targets, lrs = [], [], []
  eps = lr
  for i in range(len(marks) + 1):
    if i:
      eps *= factors[i - 1]
    g = g_of(eps, batch_size, momentum)
    ideal = batch_for(g)
    if ideal <= cap:
      b = round_batch_size(ideal, k, cap)
      stage_lr = new_lr
    else:
      b = k * (cap // k)
      stage_lr = lr_for(g, b)
    batches.append(b)
    targets.append(g)
    lrs.append(stage_lr)
  # The LR as a multistep policy over epochs; its factors, like new_lr, are
  # kept to 12 significant digits, and the reported g uses them.
  cuts, steps, step_of_stage = [], [], [1.0]
  for i in range(1, len(lrs)):
    ratio = _round12(lrs[i] / lrs[i - 1])
    step_of_stage.append(ratio)
    if ratio != 1.0:
      cuts.append(_fraction_to_number(marks[i - 1]))
      steps.append(ratio)
  if not cuts:
    policy = schedules.constant(new_lr)
  elif len(set(steps)) == 1:
    policy = schedules.multistep(new_lr, milestones=cuts, gamma=steps[0])
  else:
    policy = schedules.multistep(new_lr, milestones=cuts, factors=steps)
  ratios, level = [], new_lr
  for b, g, step in zip(batches, targets, step_of_stage, strict=True):
    level *= step
    ratios.append(g_of(level, b, m_new) / g)
  schedule = _interval_stages(batches, marks, end, num_examples)
  return LrDecayRamp(schedule, policy, float(m_new), tuple(ratios))


def from_lr_policy(
  policy: schedules.Policy | str,
  batch_size: int,
  num_examples: int,
  *,
  num_epochs: float,
  **kwargs,
) -> LrDecayRamp:
  """:func:`from_lr_decay` for a piecewise-constant LR policy over epochs.

  Reads the initial LR, milestones and factors of an ``lrjax.schedules``
  ``multistep``, ``step`` (expanded to milestones ``l, 2l, ...`` below
  ``num_epochs``) or ``constant`` policy, given as a Policy or its text, and
  builds the equivalent batch ramp.

  Args:
    policy: the LR decay policy over epochs (Policy or text).
    batch_size: the batch size it was tuned for.
    num_examples: dataset size N.
    num_epochs: training length in epochs.
    **kwargs: passed on to :func:`from_lr_decay` (``momentum``,
      ``max_batch_size``, ``lr_scale``, ``new_momentum``, ``multiple_of``,
      ``exact``).

  Returns:
    The :class:`LrDecayRamp`.

  Raises:
    ValueError: for a policy that is not a piecewise-constant decay (naming
      it), or the errors of :func:`from_lr_decay`.

  Examples:
    >>> from lrjax.batch import from_lr_policy
    >>> r = from_lr_policy('step(0.1,length=60,gamma=0.2)', 128, 50000,
    ...                    num_epochs=200, momentum=0.9, max_batch_size=50000)
    >>> print(r.batch_schedule, r.lr)
    stages(128@60,640@60,3200@60,16000@20,n=50000) constant(0.1)
  """
  if isinstance(policy, str):
    policy = schedules.parse(policy)
  name = getattr(policy, 'name', None)
  args = dict(getattr(policy, 'args', ()))
  if name == 'constant':
    return from_lr_decay(
      args['value'],
      batch_size,
      num_examples,
      milestones=(),
      factors=(),
      num_epochs=num_epochs,
      **kwargs,
    )
  if name == 'multistep':
    milestones = tuple(args['milestones'])
    factors = args.get('factors') or args.get('gamma') or 0.1
  elif name == 'step':
    length = _as_fraction(args['length'], 'length')
    end = _as_fraction(num_epochs, 'num_epochs')
    count = math.ceil(end / length) - 1
    milestones = tuple(
      _fraction_to_number(length * i) for i in range(1, count + 1)
    )
    factors = args.get('gamma', 0.1)
  else:
    raise ValueError(
      f'policy={policy} is not a piecewise-constant decay: give a constant, '
      'step or multistep policy, or call from_lr_decay with milestones'
    )
  return from_lr_decay(
    args['value'],
    batch_size,
    num_examples,
    milestones=milestones,
    factors=factors,
    num_epochs=num_epochs,
    **kwargs,
  )


class SeesawRamp(NamedTuple):
  """Result of :func:`seesaw`.

  Attributes:
    batch_schedule: the batch ramp (a BatchSchedule).
    lr: the LR policy over epochs that goes with it (``schedules.seesaw``:
      x 1/sqrt(alpha) per cut while the batch grows, / alpha past the cap).
    decay: the step decay it replaces (``schedules.discretize`` of the
      given policy: / alpha per cut at a constant batch).
    milestones: the epochs of the cuts (where the batch or the LR changes).
    noise_scale_ratio: per stage, the realised :math:`\\eta/\\sqrt{B}`
      over the decay's (Adam's counterpart of SGD's g; 1.0 unless rounding
      the batch size changed it).
  """

  batch_schedule: BatchSchedule
  lr: schedules.Policy
  decay: schedules.Policy
  milestones: tuple[float, ...]
  noise_scale_ratio: tuple[float, ...]


def seesaw(
  lr: float | schedules.Policy | str,
  batch_size: int,
  num_examples: int,
  *,
  num_epochs: float,
  milestones: Sequence[float] | None = None,
  factor: float = 2.0,
  max_batch_size: float | None = None,
  multiple_of: int = 1,
  max_cuts: int | None = None,
) -> SeesawRamp:
  """Seesaw: the batch ramp an Adam-type optimizer trades for an LR decay.

  Smith et al.'s conversion (:func:`from_lr_decay`) keeps SGD's noise
  scale :math:`\\propto \\eta/B`: where the LR would fall by
  :math:`\\alpha` the batch grows by :math:`\\alpha` at the same LR. For
  Adam, Meterez et al. (2025) keep :math:`\\eta/\\sqrt{B}` instead: where
  a standard schedule divides the LR by :math:`\\alpha`, Seesaw multiplies
  it by :math:`1/\\sqrt{\\alpha}` and the batch by :math:`\\alpha`
  (:math:`\\alpha = 2`: LR x 0.707, batch x 2):

  .. math::
    (\\eta_k, B_k) = \\left(\\eta_0\\, \\alpha^{-k/2},\\; B_0\\, \\alpha^{k}
      \\right) \\text{ instead of } (\\eta_0\\, \\alpha^{-k},\\; B_0),
    \\qquad \\frac{\\eta_k}{\\sqrt{B_k}} = \\frac{\\eta_0
      \\alpha^{-k}}{\\sqrt{B_0}}.

  The standard schedule is a step decay (``lr`` a number: divided by
  ``factor`` at each of ``milestones``; or a ``step`` / ``multistep``
  policy, each milestone with its own factor :math:`f`: batch x
  :math:`1/f`, LR x :math:`\\sqrt f`), or any decaying policy (a warmup +
  cosine, ...) cut into one by :func:`lrjax.schedules.discretize`: the
  k-th cut is the first epoch at which the policy has fallen to
  :math:`p(0)\\,\\alpha^{-k}` (:math:`p` the policy after its warmup;
  for a cosine over :math:`T` epochs and :math:`\\alpha = 2`,
  :math:`t_k = \\frac{T}{\\pi}\\arccos(2^{1-k} - 1)`).

  **Cap.** The batch grows only up to ``max_batch_size`` (an int, or a
  measured B_simple passed as a number; floored to a multiple of
  ``multiple_of``, at most ``num_examples``). From the cut at which it
  would pass the cap it stays at the cap, and the LR is solved from
  :math:`\\eta_k/\\sqrt{B_\\max} = \\hat\\eta_k/\\sqrt{B_0}`: past the
  cap it falls by :math:`\\alpha` per cut, as the standard schedule
  does (``from_lr_decay``'s hybrid, for Adam). Below the cap the batch is
  rounded with :func:`round_batch_size`; ``noise_scale_ratio`` reports
  what that changes.

  Conditions (the paper's): an Adam-type optimizer (for SGD use
  :func:`from_lr_decay`); a batch below the critical batch size all along
  (so cap it at the measured B_simple, or below); the evidence is
  150M-600M-parameter language models trained at Chinchilla scale, where
  Seesaw matched cosine at equal FLOPs with about 36% less wall-clock
  time (fewer, larger updates).

  Args:
    lr: the standard schedule: the initial LR (with ``milestones``), or
      a Policy over epochs, or its text.
    batch_size: its (constant) batch size :math:`B_0`.
    num_examples: dataset size N.
    num_epochs: training length in epochs (cuts at or past it are dropped).
    milestones: with a number ``lr``: the epochs at which it is divided
      by ``factor``; None with a policy.
    factor: :math:`\\alpha > 1` (for a number ``lr`` or a continuous
      policy; a step policy brings its own factors).
    max_batch_size: the cap; None: no cap (the dataset size).
    multiple_of: realisable batch sizes are multiples of this.
    max_cuts: at most this many cuts (a policy that decays to 0 needs it).

  Returns:
    A :class:`SeesawRamp` (batch_schedule, lr policy over epochs, the
    decay it replaces, the cut epochs, noise_scale_ratio per stage).

  Raises:
    ValueError: naming the argument: milestones with a policy (or none
      with a number), a cap below the batch, sizes < 1, or the errors of
      :func:`lrjax.schedules.discretize`.

  Examples:
    A step decay by 2 at epochs 30, 60 and 90, capped at 8x the batch:

    >>> from lrjax.batch import seesaw
    >>> r = seesaw(1.0, 32, 50000, milestones=(30, 60, 90), num_epochs=120)
    >>> print(r.batch_schedule)
    stages(32@30,64@30,128@30,256@30,n=50000)
    >>> print([round(float(r.lr(t)), 4) for t in (0, 30, 60, 90)])
    [1.0, 0.7071, 0.5, 0.3536]

    A cosine from 1 to 0.1 over 100 epochs, cut where it has fallen to
    1/2, 1/4 and 1/8 (t = 53.54, 73.23, 89.34), the batch capped at 4x:
    the third cut divides the LR by 2:

    >>> r = seesaw('cosine(1,length=100,end=0.1)', 32, 50000,
    ...            num_epochs=100, max_batch_size=128)
    >>> print(r.decay)
    multistep(1,milestones=53.5441/73.2279/89.3399,gamma=0.5)
    >>> print(r.batch_schedule)
    stages(32@53.5441,64@19.6838,128@26.7721,n=50000)
    >>> print([round(float(r.lr(t)), 4) for t in (0, 60, 80, 95)])
    [1.0, 0.7071, 0.5, 0.25]

  References:
    Meterez, Lee, Pehlevan, Kakade et al. 2025, Seesaw: Accelerating
    Training by Balancing Learning Rate and Batch Size Scheduling, arXiv
    2510.14717; Smith, Kindermans, Ying, Le 2018 (the SGD rule);
    Malladi et al. 2022 (the square-root scaling rule for Adam).
  """
  from lrjax.schedules import _seesaw

  batch_size, num_examples, end = _start_and_length(
    batch_size, num_examples, num_epochs
  )
  alpha = _finite_positive(factor, 'factor')
  if alpha <= 1:
    raise ValueError(f'factor={factor!r} must be > 1 (2 halves the LR)')
  if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
    if milestones is None:
      raise ValueError(
        f'lr={lr!r} is a number: give milestones (the epochs at which the '
        'standard schedule divides it by factor), or give a policy'
      )
    marks = tuple(
      _fraction_to_number(_as_fraction(m, 'milestones')) for m in milestones
    )
    lr = _finite_positive(lr, 'lr')
    policy = (
      schedules.multistep(lr, milestones=marks, gamma=_round12(1 / alpha))
      if marks
      else schedules.constant(lr)
    )
  else:
    if milestones is not None:
      raise ValueError(
        f'milestones={milestones!r} go with a number lr; the policy '
        f'{lr} has its own'
      )
    policy = schedules.parse(lr) if isinstance(lr, str) else lr
  k = _positive_int(multiple_of, 'multiple_of')
  if max_batch_size is None:
    cap = num_examples
  else:
    cap = min(_finite_positive(max_batch_size, 'max_batch_size'), num_examples)
  cap = k * math.floor(cap / k)
  if cap < batch_size:
    raise ValueError(
      f'max_batch_size={max_batch_size!r} (a multiple of {k}: {cap}) is '
      f'below batch_size={batch_size}: the batch could not grow'
    )
  length = _fraction_to_number(end)
  growth = cap / batch_size
  decay = schedules.discretize(policy, length, alpha, max_cuts)
  value, marks, factors, offset, _ = _seesaw.steps(decay, length)
  # Without a cap the policy's text states none, unless the dataset size
  # binds.
  stated = growth
  if max_batch_size is None and 1 / math.prod(factors) <= growth:
    stated = None
  lr_policy = schedules.seesaw(policy, length, stated, alpha, max_cuts)
  lrs, growths = _seesaw.levels(value, factors, growth)
  cuts = [
    _as_fraction(offset, 'offset') + _as_fraction(m, 'milestones')
    for m in marks
  ]
  batches, ratios, standard = [], [], value
  for i, (eta, g) in enumerate(zip(lrs, growths, strict=True)):
    if i:
      standard *= factors[i - 1]
    b = (
      cap if g * batch_size >= cap else round_batch_size(g * batch_size, k, cap)
    )
    batches.append(b)
    ratios.append(eta / math.sqrt(b) / (standard / math.sqrt(batch_size)))
  schedule = _interval_stages(batches, cuts, end, num_examples)
  return SeesawRamp(
    schedule,
    lr_policy,
    decay,
    tuple(_fraction_to_number(c) for c in cuts),
    tuple(ratios),
  )


def _duration_examples(
  epochs, examples, num_examples: int, name: str
) -> fractions.Fraction:
  if (epochs is None) == (examples is None):
    raise ValueError(f'give exactly one of {name}_epochs, {name}_examples')
  if epochs is not None:
    value = _as_fraction(epochs, f'{name}_epochs') * num_examples
    if value <= 0:
      raise ValueError(f'{name}_epochs={epochs!r} must be > 0')
    return value
  return fractions.Fraction(_positive_int(examples, f'{name}_examples'))


def _from_targets(
  batches: Sequence[int], ends: Sequence[fractions.Fraction], num_examples: int
) -> BatchSchedule:
  """Stages in examples from cumulative example targets (rounded up)."""
  stages, previous = [], 0
  for b, end in zip(batches, ends, strict=True):
    target = math.ceil(end)
    if target <= previous:
      continue
    if stages and stages[-1][0] == b:
      stages[-1][1] += target - previous
    else:
      stages.append([b, target - previous])
    previous = target
  return BatchSchedule(
    tuple(Stage(b, examples=n) for b, n in stages), num_examples
  )


def _check_ramp_ends(start, stop, num_examples, k):
  start = _positive_int(start, 'start')
  stop = _positive_int(stop, 'stop')
  if stop < start:
    raise ValueError(f'stop={stop} must be >= start={start}')
  if stop > num_examples:
    raise ValueError(f'stop={stop} is above num_examples={num_examples}')
  for name, b in (('start', start), ('stop', stop)):
    if b % k:
      lo, hi = k * (b // k), k * (b // k + 1)
      raise ValueError(
        f'{name}={b} is not a multiple of multiple_of={k}; nearest '
        f'realisable: {", ".join(str(x) for x in (lo, hi) if x > 0)}'
      )
  return start, stop


def linear_ramp(
  start: int,
  stop: int,
  increment: int,
  *,
  num_epochs: float,
  num_examples: int,
  ramp_epochs: float | None = None,
  ramp_examples: int | None = None,
  multiple_of: int = 1,
) -> BatchSchedule:
  """Megatron-style batch ramp-up: grow by a fixed increment, then hold.

  With :math:`n = (B_\\mathrm{stop} - B_\\mathrm{start}) / \\Delta`
  increments over a ramp of :math:`R` examples, the batch after :math:`s`
  examples is

  .. math::
    B(s) = B_\\mathrm{start} + \\Delta \\left\\lfloor \\frac{s n}{R}
      \\right\\rfloor \\quad (s < R), \\qquad B(s) = B_\\mathrm{stop}
      \\quad (s \\ge R),

  each step starting at the first update at which the examples seen reach its
  target (see :class:`BatchSchedule`).

  Args:
    start: first batch size.
    stop: final batch size; ``stop - start`` a multiple of ``increment``.
    increment: :math:`\\Delta` >= 1, a multiple of ``multiple_of``.
    num_epochs: total training length in epochs (includes the ramp).
    num_examples: dataset size N.
    ramp_epochs: ramp length in epochs (or give ``ramp_examples``).
    ramp_examples: ramp length in examples.
    multiple_of: every batch must be a multiple of this (replicas).

  Returns:
    The BatchSchedule.

  Examples:
    >>> from lrjax.batch import linear_ramp
    >>> print(linear_ramp(32, 128, 32, ramp_examples=3000, num_epochs=3,
    ...                   num_examples=1000))
    stages(32@1000ex,64@1000ex,96@1000ex,n=1000)

  References:
    Shoeybi et al. 2019, Megatron-LM (``--rampup-batch-size``); Brown et al.
    2020, Language Models are Few-Shot Learners (batch ramp).
  """
  n_total = _positive_int(num_examples, 'num_examples')
  k = _positive_int(multiple_of, 'multiple_of')
  start, stop = _check_ramp_ends(start, stop, n_total, k)
  increment = _positive_int(increment, 'increment')
  if increment % k:
    raise ValueError(
      f'increment={increment} must be a multiple of multiple_of={k}'
    )
  if (stop - start) % increment:
    raise ValueError(
      f'stop - start = {stop - start} must be a multiple of '
      f'increment={increment}'
    )
  ramp = _duration_examples(ramp_epochs, ramp_examples, n_total, 'ramp')
  total = _as_fraction(num_epochs, 'num_epochs') * n_total
  if total < ramp:
    raise ValueError(
      f'num_epochs={num_epochs} is shorter than the ramp ({float(ramp):g} '
      'examples)'
    )
  n = (stop - start) // increment
  batches = [start + i * increment for i in range(n)] + [stop]
  ends = [ramp * (i + 1) / n for i in range(n)] + [total] if n else [total]
  return _from_targets(batches, ends, n_total)


def geometric_ramp(
  start: int,
  stop: int,
  factor: float = 2.0,
  *,
  num_epochs: float,
  num_examples: int,
  ramp_epochs: float | None = None,
  ramp_examples: int | None = None,
  multiple_of: int = 1,
) -> BatchSchedule:
  """Batch multiplied by ``factor`` in equal steps over a ramp, then held.

  .. math::
    B_i = \\mathrm{round}(B_\\mathrm{start} \\cdot r^i), \\quad
    i = 0, \\dots, n - 1, \\quad
    n = \\lceil \\log(B_\\mathrm{stop} / B_\\mathrm{start}) / \\log r \\rceil,

  each held for :math:`R/n` examples, then :math:`B_\\mathrm{stop}` until the
  end. Rounding uses :func:`round_batch_size` with ``multiple_of``; equal
  neighbours merge.

  Args:
    start: first batch size.
    stop: final batch size (reached at the end of the ramp).
    factor: :math:`r` > 1.
    num_epochs: total training length in epochs (includes the ramp).
    num_examples: dataset size N.
    ramp_epochs: ramp length in epochs (or give ``ramp_examples``).
    ramp_examples: ramp length in examples.
    multiple_of: every batch is a multiple of this.

  Returns:
    The BatchSchedule.

  Examples:
    >>> from lrjax.batch import geometric_ramp
    >>> print(geometric_ramp(16, 128, 2, ramp_epochs=3, num_epochs=4,
    ...                      num_examples=1000))
    stages(16@1000ex,32@1000ex,64@1000ex,128@1000ex,n=1000)
  """
  n_total = _positive_int(num_examples, 'num_examples')
  k = _positive_int(multiple_of, 'multiple_of')
  start, stop = _check_ramp_ends(start, stop, n_total, k)
  r = _finite_positive(factor, 'factor')
  if r <= 1:
    raise ValueError(f'factor={factor!r} must be > 1')
  ramp = _duration_examples(ramp_epochs, ramp_examples, n_total, 'ramp')
  total = _as_fraction(num_epochs, 'num_epochs') * n_total
  if total < ramp:
    raise ValueError(
      f'num_epochs={num_epochs} is shorter than the ramp ({float(ramp):g} '
      'examples)'
    )
  n = 0
  while start * r**n < stop * (1 - 1e-12):
    n += 1
  batches = [round_batch_size(start * r**i, k, stop) for i in range(n)]
  batches.append(stop)
  ends = [ramp * (i + 1) / n for i in range(n)] + [total] if n else [total]
  return _from_targets(batches, ends, n_total)


def cyclic(
  min_batch_size: int,
  max_batch_size: int,
  *,
  cycle_epochs: float,
  num_epochs: float,
  num_examples: int,
  stages_per_cycle: int = 8,
  decay: float = 0.5,
  multiple_of: int = 1,
) -> BatchSchedule:
  """Cyclic batch size: the batch counterpart of a triangular cyclical LR.

  The noise scale :math:`g \\propto 1/B` follows a triangle wave between
  :math:`1/B_\\max` and :math:`1/B_\\min`, whose excursion above
  :math:`1/B_\\max` is multiplied by ``decay`` every cycle (like the
  ``triangular2`` cyclical LR, whose peak LR halves every cycle):

  .. math::
    \\frac{1}{B(t)} = \\frac{1}{B_\\max} + \\left(\\frac{1}{B_\\min} -
      \\frac{1}{B_\\max}\\right) d^{c}\\,
      \\bigl(1 - |2\\varphi - 1|\\bigr),

  with cycle index :math:`c` and phase :math:`\\varphi \\in [0, 1)`. Each cycle
  starts and ends at the large batch (low noise) and reaches the small batch
  (high noise) mid-cycle. It is cut into ``stages_per_cycle`` constant stages,
  each taking the value at its middle, rounded with :func:`round_batch_size`.

  Args:
    min_batch_size: smallest batch (the LR cycle's peak).
    max_batch_size: largest batch (the LR cycle's base).
    cycle_epochs: length of one cycle in epochs.
    num_epochs: total training length (a last partial cycle is cut short).
    num_examples: dataset size N.
    stages_per_cycle: constant stages per cycle (>= 2).
    decay: per-cycle factor of the excursion, in (0, 1].
    multiple_of: every batch is a multiple of this.

  Returns:
    The BatchSchedule.

  Examples:
    >>> from lrjax.batch import cyclic
    >>> s = cyclic(100, 400, cycle_epochs=1, num_epochs=2, num_examples=4000,
    ...            stages_per_cycle=4, decay=0.5)
    >>> s.batch_size_per_stage
    (229, 123, 229, 291, 188, 291)

  References:
    Smith 2017, Cyclical Learning Rates for Training Neural Networks
    (triangular2); Smith et al. 2018 (batch size in place of LR).
  """
  n_total = _positive_int(num_examples, 'num_examples')
  k = _positive_int(multiple_of, 'multiple_of')
  lo, hi = _check_ramp_ends(min_batch_size, max_batch_size, n_total, k)
  steps = _positive_int(stages_per_cycle, 'stages_per_cycle')
  if steps < 2:
    raise ValueError(f'stages_per_cycle={steps} must be >= 2')
  d = _finite_positive(decay, 'decay')
  if d > 1:
    raise ValueError(f'decay={decay!r} must be in (0, 1]')
  cycle = _as_fraction(cycle_epochs, 'cycle_epochs') * n_total
  if cycle <= 0:
    raise ValueError(f'cycle_epochs={cycle_epochs!r} must be > 0')
  total = _as_fraction(num_epochs, 'num_epochs') * n_total
  if total <= 0:
    raise ValueError(f'num_epochs={num_epochs!r} must be > 0')
  piece = cycle / steps
  batches, ends = [], []
  i = 0
  while piece * i < total:
    c, j = divmod(i, steps)
    phase = (j + 0.5) / steps
    inv = 1 / hi + (1 / lo - 1 / hi) * d**c * (1 - abs(2 * phase - 1))
    batches.append(round_batch_size(1 / inv, k, hi))
    ends.append(min(piece * (i + 1), total))
    i += 1
  return _from_targets(batches, ends, n_total)


def _interval_stages(
  batches: list[int],
  marks: list[fractions.Fraction],
  end: fractions.Fraction,
  num_examples: int,
) -> BatchSchedule:
  """One stage per interval between ``0, *marks, end`` (exact epochs), of
  ``batches[i]``; equal neighbours merge (same bookkeeping, shorter text)."""
  edges = [fractions.Fraction(0), *marks, end]
  stages: list[list] = []
  for i, b in enumerate(batches):
    length = edges[i + 1] - edges[i]
    if stages and stages[-1][0] == b:
      stages[-1][1] += length
    else:
      stages.append([b, length])
  return BatchSchedule(
    tuple(Stage(b, epochs=_fraction_to_number(e)) for b, e in stages),
    num_examples,
  )


def _start_and_length(
  batch_size: Any, num_examples: Any, num_epochs: Any
) -> tuple[int, int, fractions.Fraction]:
  """The checked starting batch, dataset size and run length (exact epochs)
  of a ramp built from an LR decay.

  Raises:
    ValueError: naming the argument, for a batch above the dataset or a
      length that is not > 0.
  """
  batch_size = _positive_int(batch_size, 'batch_size')
  num_examples = _positive_int(num_examples, 'num_examples')
  if batch_size > num_examples:
    raise ValueError(
      f'batch_size={batch_size} is above num_examples={num_examples}'
    )
  end = _as_fraction(num_epochs, 'num_epochs')
  if end <= 0:
    raise ValueError(f'num_epochs={num_epochs!r} must be > 0')
  return batch_size, num_examples, end
