"""Step decays read off any decaying policy, and Seesaw's LR side of them."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from lrjax.schedules import _policy as P
from lrjax.schedules._compose import warmup
from lrjax.schedules._formula import constant, multistep
from lrjax.schedules._policy import Policy, register

# Grid on which a continuous policy is scanned for its falls, before the
# bisection refines each one.
_GRID = 4096
# A value within this relative distance of a threshold has reached it (the
# policies evaluate in float32: a cosine's floor of exactly value / 8 must
# count as a fall by 8).
_REACHED = 1e-6


def _as_policy(policy) -> Policy:
  if isinstance(policy, str):
    from lrjax.schedules._text import parse  # noqa: PLC0415

    policy = parse(policy)
  return P.as_policy('policy', policy)


def _unwrap_warmup(policy: Policy, length):
  """``(inner, warmup kwargs or None, inner length)``."""
  if policy.name != 'warmup':
    return policy, None, length
  args = dict(policy.args)
  inner = args.pop('policy')
  inner_length = length - args['length'] if args.get('shift', True) else length
  if not inner_length > 0:
    raise ValueError(
      f'length={length} ends within the warmup of {policy}: nothing decays'
    )
  return inner, args, inner_length


def _fall(policy: Policy, lo: float, hi: float, threshold: float) -> float:
  """The first t in (lo, hi] with policy(t) <= threshold, by bisection
  (policy(lo) above it, policy(hi) at or below it), to float32's
  resolution of t."""
  reached = threshold * (1 + _REACHED)
  while True:
    mid = (lo + hi) / 2
    if np.float32(mid) in (np.float32(lo), np.float32(hi)):
      return hi
    if float(policy(mid)) <= reached:
      hi = mid
    else:
      lo = mid


def _falls(policy: Policy, length, factor: float, max_cuts) -> list[float]:
  ref = float(policy(0))
  if not (math.isfinite(ref) and ref > 0):
    raise ValueError(f'policy={policy} starts at {ref}: it must start > 0')
  grid = np.linspace(0.0, float(length), _GRID + 1)
  values = np.asarray(policy(jnp.asarray(grid, jnp.float32)), np.float64)
  cuts: list[float] = []
  while max_cuts is None or len(cuts) < max_cuts:
    threshold = ref * factor ** -(len(cuts) + 1)
    hit = np.nonzero(values <= threshold * (1 + _REACHED))[0]
    if not hit.size:
      break
    if max_cuts is None and len(cuts) == 64:
      raise ValueError(
        f'policy={policy} falls by more than factor**64 before '
        f'length={length} (does it decay to 0?): give max_cuts, or a '
        'floor end > 0'
      )
    i = int(hit[0])
    t = _fall(policy, grid[i - 1], grid[i], threshold)
    t = float(f'{t:.6g}')  # float32's resolution, in a shorter text
    if t >= length:
      break
    if cuts and t <= cuts[-1]:
      raise ValueError(
        f'policy={policy} falls by factor={factor} twice within 6 '
        f'significant digits of t={t}: give max_cuts={len(cuts)}'
      )
    cuts.append(t)
  return cuts


def discretize(
  policy, length: float, factor: float = 2.0, max_cuts: int | None = None
) -> Policy:
  """The step decay that a decaying policy amounts to, cut by cut.

  A continuous policy :math:`p` (``cosine``, ``polynomial``, ``linear``,
  ...) becomes a step decay that divides :math:`p(0)` by :math:`\\alpha` =
  ``factor`` at each point where :math:`p` has fallen by another
  :math:`\\alpha`:

  .. math::
    t_k = \\min\\{t \\in [0, L) : p(t) \\le p(0)\\, \\alpha^{-k}\\},
    \\qquad
    \\hat p(t) = p(0)\\, \\alpha^{-\\#\\{k : t_k \\le t\\}}.

  Each :math:`t_k` is located on a grid of 4096 points over
  :math:`[0, L]` and refined by bisection on the policy (float32, so
  :math:`t_k` is exact to about 1e-7 relative), then written with 6
  significant digits. The cosine :math:`p(t) = p_0 (1 + \\cos(\\pi t /
  T))/2` falls by :math:`2^k` at :math:`t_k = \\frac{T}{\\pi}
  \\arccos(2^{1-k} - 1)`. A piecewise-constant policy (``constant``,
  ``step``, ``multistep``) is its own step decay: its milestones before
  :math:`L` are the cuts and its factors the falls (``factor`` is not
  used). A ``warmup(...)`` is kept in front, and the policy it warms up
  to is the one discretised (its time starts after the warmup unless
  ``shift=false``).

  Args:
    policy: a decaying Policy (or its text) over t, e.g. epochs.
    length: :math:`L`, the end of training (units of t; cuts at or past
      it are dropped).
    factor: :math:`\\alpha > 1`, the fall per cut.
    max_cuts: at most this many cuts (needed when the policy decays to 0,
      which it would otherwise cut without end).

  Returns:
    A ``multistep`` (or ``constant``) Policy, inside the same ``warmup``
    if there was one.

  Raises:
    ValueError: for ``factor <= 1``, a policy that does not start above 0
      or falls by more than :math:`\\alpha^{64}` without ``max_cuts``.

  Examples:
    >>> from lrjax import schedules
    >>> print(schedules.discretize('cosine(1,length=90)', 90, max_cuts=3))
    multistep(1,milestones=45/60/69.2952,gamma=0.5)
    >>> print(schedules.discretize('cosine(1,length=90,end=0.2)', 90))
    multistep(1,milestones=52.2387/75.5225,gamma=0.5)
  """
  policy = _as_policy(policy)
  length = P.check_duration('length', length)
  factor = P.check_float('factor', factor, low=1, low_open=True)
  if max_cuts is not None and (
    isinstance(max_cuts, bool) or not isinstance(max_cuts, int) or max_cuts < 0
  ):
    raise ValueError(f'max_cuts={max_cuts!r} must be an int >= 0')
  inner, warm, inner_length = _unwrap_warmup(policy, length)
  if warm is not None:
    return warmup(discretize(inner, inner_length, factor, max_cuts), **warm)
  args = dict(policy.args)
  if policy.name in ('constant', 'step', 'multistep') and args['value'] <= 0:
    raise ValueError(
      f'policy={policy} starts at {args["value"]}: it must start > 0'
    )
  if policy.name == 'constant':
    return policy
  if policy.name in ('step', 'multistep'):
    if policy.name == 'step':
      each = args['length']
      count = math.ceil(length / each) - 1
      marks = [each * i for i in range(1, count + 1)]
      factors = [args.get('gamma', 0.1)] * len(marks)
    else:
      marks = [m for m in args['milestones'] if m < length]
      factors = list(args.get('factors') or ())
      factors = factors or [args.get('gamma') or 0.1] * len(marks)
    marks, factors = marks[:max_cuts], factors[: len(marks[:max_cuts])]
    if not marks:
      return constant(args['value'])
    if len(set(factors)) == 1:
      return multistep(args['value'], milestones=marks, gamma=factors[0])
    return multistep(args['value'], milestones=marks, factors=factors)
  cuts = _falls(inner, length, factor, max_cuts)
  if not cuts:
    return constant(float(inner(0)))
  return multistep(
    float(f'{float(inner(0)):.7g}'), milestones=cuts, gamma=1 / factor
  )


def steps(policy: Policy, length):
  """``(value, milestones, factors, offset, warmup kwargs)`` of a
  discretized policy: the multistep's table, and where its time starts."""
  inner, warm, inner_length = _unwrap_warmup(policy, length)
  offset = length - inner_length
  args = dict(inner.args)
  if inner.name == 'constant':
    return args['value'], (), (), offset, warm
  marks = tuple(args['milestones'])
  factors = tuple(args.get('factors') or ())
  factors = factors or (args.get('gamma') or 0.1,) * len(marks)
  return args['value'], marks, factors, offset, warm


def levels(
  value: float, factors, growth: float
) -> tuple[list[float], list[float]]:
  """Seesaw's LR and batch growth per stage of a step decay.

  ``(lrs, batch factors)``: the batch grows by :math:`1/f` where the LR
  would fall by :math:`f`, up to ``growth`` in all; the LR keeps
  :math:`\\eta / \\sqrt{B}` of the step decay (see :func:`seesaw`).
  """
  lrs, batches, fall = [value], [1.0], 1.0
  for f in factors:
    fall *= f
    batch = 1 / fall if 1 / fall <= growth * (1 + 1e-12) else growth
    lrs.append(value * fall * math.sqrt(batch))
    batches.append(batch)
  return lrs, batches


@register('seesaw')
def seesaw(
  policy,
  length: float,
  growth: float | None = None,
  factor: float = 2.0,
  max_cuts: int | None = None,
) -> Policy:
  """Seesaw's LR: the LR side of an Adam batch ramp that replaces a decay.

  Meterez et al. (2025) trade each fall of the LR by :math:`\\alpha` for a
  batch :math:`\\alpha` times larger and an LR only :math:`\\sqrt\\alpha`
  smaller, for Adam-type optimizers (where :math:`\\eta/\\sqrt{B}` plays
  the part of SGD's noise scale :math:`\\eta/B`):

  .. math::
    \\eta \\to \\frac{\\eta}{\\alpha},\\; B \\to B
    \\quad\\Longrightarrow\\quad
    \\eta \\to \\frac{\\eta}{\\sqrt{\\alpha}},\\; B \\to \\alpha B,
    \\qquad\\text{so that } \\frac{\\eta_k}{\\sqrt{B_k}} =
    \\frac{\\hat\\eta_k}{\\sqrt{B_0}}

  stage by stage, :math:`\\hat\\eta_k` being the step decay of
  :func:`discretize` (``policy`` cut where it has fallen by ``factor``).
  Once the batch would grow past ``growth`` times its start it stays
  there, and the LR is solved from the same equality:
  :math:`\\eta_k = \\hat\\eta_k \\sqrt{\\mathrm{growth}}`, so past the cap
  it falls by :math:`\\alpha` per cut as the decay does. The batch side
  is :func:`lrjax.batch.seesaw`.

  Conditions (the paper's): an Adam-type optimizer (Adam, AdamW; for SGD
  Smith et al.'s rule keeps the LR, :func:`lrjax.batch.from_lr_decay`),
  and a batch that stays below the critical batch size (cap the growth
  at it, e.g. at the measured B_simple); shown on 150M-600M-parameter
  language models at Chinchilla scale, where it matched cosine at equal
  FLOPs with about 36% less wall-clock time.

  Args:
    policy: the decaying LR policy (or its text), e.g. a warmup + cosine.
    length: the end of training (units of t, e.g. epochs).
    growth: the largest factor the batch grows by (cap / start batch);
      None: no cap.
    factor: :math:`\\alpha > 1`, the fall per cut of a continuous policy.
    max_cuts: at most this many cuts (see :func:`discretize`).

  Returns:
    The Policy, text ``seesaw(policy,length=L,...)``; piecewise constant.

  Raises:
    ValueError: for ``growth < 1``, or the errors of :func:`discretize`.

  Examples:
    Step decay /2 at 30, 60 and 90: LR x 1/sqrt(2) per milestone while
    the batch doubles (to 4x here), then /2 at the cap:

    >>> from lrjax import schedules
    >>> s = schedules.seesaw('multistep(1,milestones=30/60/90,gamma=0.5)',
    ...                      120, growth=4)
    >>> print([round(float(s(t)), 4) for t in (0, 30, 60, 90)])
    [1.0, 0.7071, 0.5, 0.25]
    >>> print(s)
    seesaw(multistep(1,milestones=30/60/90,gamma=0.5),length=120,growth=4)

  References:
    Meterez, Lee, Pehlevan, Kakade et al. 2025, Seesaw: Accelerating
    Training by Balancing Learning Rate and Batch Size Scheduling,
    arXiv 2510.14717.
  """
  source = _as_policy(policy)
  length = P.check_duration('length', length)
  if growth is not None:
    growth = P.check_float('growth', growth, low=1)
  factor = P.check_float('factor', factor, low=1, low_open=True)
  decay = discretize(source, length, factor, max_cuts)
  value, marks, factors, _, warm = steps(decay, length)
  lrs, _ = levels(value, factors, math.inf if growth is None else growth)
  if marks:
    ratios = [b / a for a, b in zip(lrs, lrs[1:], strict=False)]
    inner = multistep(value, milestones=marks, factors=ratios)
  else:
    inner = constant(value)
  result = warmup(inner, **warm) if warm is not None else inner
  return P.make(
    'seesaw',
    result.fn,
    unit=source.unit,
    policy=source,
    length=length,
    growth=growth,
    factor=factor,
    max_cuts=max_cuts,
  )
