"""The decision half of the recipe: measurements in, schedules out.

Pure functions of the probes' measurements (a peak LR at a probe batch, a
noise scale), the budget and the hardware, so that every rule can be
checked by hand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from lrjax import batch as lbatch
from lrjax import schedules

# Optimizer families and their batch-size scaling rule. SGD-like updates
# scale linearly with the batch (Goyal et al. 2017; Smith et al. 2018's SDE);
# for adaptive methods the square-root rule keeps the SDE (Malladi et al.
# 2022) and is what You et al. 2020 use for LAMB.
LINEAR_OPTIMIZERS = ('sgd', 'nesterov', 'lars')
SQRT_OPTIMIZERS = ('adam', 'adamw', 'lamb')

# Goyal et al. warm up for 5 of their 90 ImageNet epochs.
GOYAL_WARMUP_FRACTION = 5 / 90
# Ma & Yarats 2021: Adam's "untuned" linear warmup from 0 over 2/(1-beta2)
# updates; the recipe keeps at least half the budget for the decay.
MAX_WARMUP_FRACTION = 0.5
# Smith et al.'s CIFAR-10 schedule: decay by 5 at epochs 60, 120, 160 of 200.
SMITH_MILESTONES = (0.3, 0.6, 0.8)
SMITH_FACTOR = 0.2
# The ramp's stages as fractions of the budget, between those milestones.
RAMP_FRACTIONS = (0.3, 0.3, 0.2, 0.2)
# The fewest updates a stage of Smith's ramp may keep. Smith et al.'s
# equivalence of growing the batch and decaying the LR is an SDE argument,
# which holds over many small updates; the shortest stage of their own
# CIFAR-10 ramp (the last: 40 epochs of 50,000 images at batch 16,000) kept
# 125 updates.
MIN_STAGE_UPDATES = 100
# Hägele et al. 2024: a 20% 1-sqrt cooldown matches cosine.
WSD_COOLDOWN_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class Budget:
  """How much training the recipe plans for; exactly one of the four.

  Attributes:
    epochs: passes over the training set.
    examples: training examples (sequences for a language model).
    tokens: training tokens (needs ``seq_len``).
    seq_len: tokens per sequence, for ``tokens``.
    seconds: wall-clock seconds of training (compilation excluded); the
      recipe converts them into examples with the measured time per
      update (:func:`decide`'s ``step_seconds``).
  """

  epochs: float | None = None
  examples: int | None = None
  tokens: int | None = None
  seq_len: int | None = None
  seconds: float | None = None

  def validate(self) -> tuple[str, float]:
    """The one given budget, ``(name, value)``.

    Raises:
      ValueError: unless exactly one of epochs, examples, tokens and
        seconds is given, finite and positive, or for tokens without
        ``seq_len``.
    """
    given = {
      k: v
      for k, v in (
        ('epochs', self.epochs),
        ('examples', self.examples),
        ('tokens', self.tokens),
        ('seconds', self.seconds),
      )
      if v is not None
    }
    if len(given) != 1:
      raise ValueError(
        f'Budget{tuple(given) or "()"}: give exactly one of epochs, '
        'examples, tokens or seconds, e.g. Budget(epochs=20)'
      )
    ((name, value),) = given.items()
    if not (math.isfinite(value) and value > 0):
      raise ValueError(f'Budget({name}={value!r}) must be finite and > 0')
    if name == 'tokens' and (not self.seq_len or self.seq_len < 1):
      raise ValueError(
        f'Budget(tokens={value}) needs seq_len=<tokens per sequence> >= 1'
      )
    return name, float(value)

  def to_examples(
    self, num_examples: int, seconds_per_example: float | None = None
  ) -> float:
    """The budget in examples for a dataset of ``num_examples``.

    Args:
      num_examples: the training set's size.
      seconds_per_example: training seconds per example of the planned
        batch schedule (needed for ``seconds``).

    Raises:
      ValueError: see :meth:`validate`; for ``seconds`` without a positive
        ``seconds_per_example``.
    """
    name, value = self.validate()
    if name == 'epochs':
      return value * num_examples
    if name == 'examples':
      return value
    if name == 'tokens':
      return value / self.seq_len
    if not (seconds_per_example and seconds_per_example > 0):
      raise ValueError(
        f'Budget(seconds={value:g}) needs the measured time per update: '
        'pass step_seconds={batch: seconds} to decide (recommend measures '
        'it)'
      )
    return value / seconds_per_example


def step_time_model(step_seconds: Mapping[int, float]) -> tuple[float, float]:
  """The time per update as an affine function of the batch.

  Fits :math:`t(B) = a + c B` (a per-update overhead :math:`a` and a
  per-example cost :math:`c`, both :math:`\\ge 0`) to measured seconds per
  update :math:`t_i` at batches :math:`B_i` by least squares:

  .. math::
    c = \\frac{\\sum_i (B_i - \\bar B)(t_i - \\bar t)}
      {\\sum_i (B_i - \\bar B)^2}, \\qquad a = \\bar t - c \\bar B;

  with one batch, or when that gives :math:`a < 0`, the time is taken
  proportional to the batch (:math:`a = 0`,
  :math:`c = \\sum_i t_i B_i / \\sum_i B_i^2`); when it gives
  :math:`c < 0`, constant (:math:`c = 0`, :math:`a = \\bar t`).

  Args:
    step_seconds: batch size -> measured seconds per update (> 0).

  Returns:
    ``(a, c)``.

  Raises:
    ValueError: for no measurement, a batch < 1 or a time <= 0.

  Examples:
    >>> step_time_model({8: 0.03, 32: 0.06})  # 0.02 s + 1.25 ms/example
    (0.02, 0.00125)
    >>> step_time_model({16: 0.08})
    (0.0, 0.005)
  """
  if not step_seconds:
    raise ValueError('step_seconds is empty: give {batch: seconds} >= 1 entry')
  for b, t in step_seconds.items():
    if int(b) != b or b < 1 or not (math.isfinite(t) and t > 0):
      raise ValueError(
        f'step_seconds[{b!r}]={t!r}: batches must be integers >= 1 and '
        'times finite and > 0'
      )
  bs = [float(b) for b in step_seconds]
  ts = [float(t) for t in step_seconds.values()]
  mb, mt = sum(bs) / len(bs), sum(ts) / len(ts)
  sxx = sum((b - mb) ** 2 for b in bs)
  if sxx > 0:
    c = sum((b - mb) * (t - mt) for b, t in zip(bs, ts, strict=True)) / sxx
    a = mt - c * mb
    if c < 0:
      return _round12(mt), 0.0
    if a >= 0:
      return _round12(a), _round12(c)
  c = sum(t * b for b, t in zip(bs, ts, strict=True)) / sum(b * b for b in bs)
  return 0.0, _round12(c)


def _round12(x: float) -> float:
  return float(f'{x:.12g}')


@dataclasses.dataclass(frozen=True)
class Recipe:
  """An LR policy and a batch schedule, in text form, with the reasons.

  Attributes:
    lr: the LR policy over epochs (``lrjax.schedules.parse`` reads it; the
      trainer's ``--lr`` / ``TrainConfig.lr``).
    batch: the batch schedule (``lrjax.batch.parse`` reads it; ``--batch``
      / ``TrainConfig.batch``).
    decay: 'ramp' (Smith's increase-the-batch), 'cosine' or 'wsd'.
    peak_lr: the LR at ``start_batch`` after scaling.
    start_batch: the first stage's batch size.
    max_batch: the largest batch the schedule may reach.
    rule: 'linear' or 'sqrt', the scaling rule used.
    warmup_epochs: the gradual warmup's length (0: none).
    probe_lr: the LR the range test suggested at ``probe_batch``.
    probe_batch: the batch of the probes.
    b_simple: the measured noise scale.
    budget_examples: the training budget in examples.
    probe_examples: examples the probes consumed.
    reasons: one sentence per decision.
    budget_seconds: the budget in seconds (None: not a wall-clock budget).
    seconds_per_example: the modelled training seconds per example of the
      schedule (None without measured step times).
    probe_seconds: the probes' seconds (their updates at the measured
      time per update, compilation excluded).
  """

  lr: str
  batch: str
  decay: str
  peak_lr: float
  start_batch: int
  max_batch: int
  rule: str
  warmup_epochs: float
  probe_lr: float
  probe_batch: int
  b_simple: float
  budget_examples: float
  probe_examples: float
  reasons: tuple[str, ...]
  budget_seconds: float | None = None
  seconds_per_example: float | None = None
  probe_seconds: float = 0.0

  @property
  def probe_fraction(self) -> float:
    """The probes' cost as a fraction of the budget: in seconds for a
    wall-clock budget, else in examples."""
    if self.budget_seconds is not None:
      return self.probe_seconds / self.budget_seconds
    return self.probe_examples / self.budget_examples

  def flags(self) -> str:
    """The two trainer flags, quoted for a shell."""
    return f"--lr='{self.lr}' --batch='{self.batch}'"

  def summary(self) -> str:
    """A readable report: the flags, the measurements and the reasons."""
    cost = (
      f'{self.probe_examples:.0f} examples'
      if self.budget_seconds is None
      else f'{self.probe_seconds:.3g} s ({self.probe_examples:.0f} examples)'
    )
    lines = [
      f'lr:    {self.lr}',
      f'batch: {self.batch}',
      f'probes: LR range test at batch {self.probe_batch} -> '
      f'{self.probe_lr:.4g}; B_simple = {self.b_simple:.4g}; cost '
      f'{cost} = {100 * self.probe_fraction:.1f}% of the budget',
    ]
    lines += [f'- {r}' for r in self.reasons]
    return '\n'.join(lines)


def scaling_rule(optimizer: str) -> str:
  """'linear' for SGD-like optimizers, 'sqrt' for adaptive ones.

  Raises:
    ValueError: for an unknown optimizer (naming the known ones).
  """
  if optimizer in LINEAR_OPTIMIZERS:
    return 'linear'
  if optimizer in SQRT_OPTIMIZERS:
    return 'sqrt'
  raise ValueError(
    f'{optimizer=} is unknown; use one of {LINEAR_OPTIMIZERS + SQRT_OPTIMIZERS}'
  )


def _realisable(base: int, upper: float) -> tuple[int, ...]:
  """``base * 2**j`` up to ``upper`` (at least ``base``)."""
  from lrjax import noise

  return noise.realisable_sizes(base, max(base, int(upper)))


def batch_range(
  b_simple: float,
  num_examples: int,
  *,
  num_devices: int = 1,
  max_device_batch: int | None = None,
  max_accumulation: int = 1,
  spread: float = 2.0,
) -> tuple[int, int, int]:
  """The start batch and the batch cap of :func:`decide` (see there).

  Returns:
    ``(start, top, hardware)``: :math:`B_0`, :math:`B_{\\max}` and the
    hardware's largest batch (devices x per-device cap x accumulation;
    N without a cap).

  Raises:
    ValueError: when the cap is below ``num_devices``.
  """
  n = int(num_examples)
  hardware = (
    n
    if max_device_batch is None
    else num_devices * max_device_batch * max_accumulation
  )
  upper = min(hardware, n // 10)
  if upper < num_devices:
    raise ValueError(
      f'the largest batch min(devices x max_device_batch x accumulation = '
      f'{hardware}, N/10 = {n // 10}) is below num_devices={num_devices}: '
      'raise max_device_batch or use fewer devices'
    )
  sizes = _realisable(num_devices, upper)
  start = max(b for b in sizes if b <= max(num_devices, b_simple / spread))
  return int(start), int(sizes[-1]), int(hardware)


def _round(x: float) -> float:
  return float(f'{x:.4g}')


def ramp_stages(start: int, cap: int) -> list[tuple[int, float]]:
  """Smith's ramp as ``(batch, fraction of the examples)`` stages.

  The batch grows by 5 at 30, 60 and 80% of the examples,
  :math:`B_j = \\min(5^j B_0, B_{\\max})`; consecutive stages at the same
  batch merge.

  Examples:
    >>> ramp_stages(128, 1024)
    [(128, 0.3), (640, 0.3), (1024, 0.4)]
  """
  stages: list[tuple[int, float]] = []
  for j, f in enumerate(RAMP_FRACTIONS):
    b = min(start * 5**j, cap)
    if stages and stages[-1][0] == b:
      stages[-1] = (b, _round(stages[-1][1] + f))
    else:
      stages.append((b, f))
  return stages


def decide(
  *,
  probe_lr: float,
  probe_batch: int,
  b_simple: float,
  num_examples: int,
  budget: Budget,
  optimizer: str = 'sgd',
  momentum: float = 0.9,
  b2: float = 0.999,
  num_devices: int = 1,
  max_device_batch: int | None = None,
  max_accumulation: int = 1,
  spread: float = 2.0,
  continuable: bool = False,
  probe_examples: float = 0.0,
  step_seconds: Mapping[int, float] | None = None,
  probe_updates: Mapping[int, int] | None = None,
) -> Recipe:
  """Chooses the batch range, the peak LR, the warmup and the decay.

  With :math:`\\mathcal B` the measured noise scale, :math:`s` = ``spread``,
  :math:`R` devices, per-device cap :math:`b`, accumulation :math:`K` and
  dataset size :math:`N`, the batches are powers of two times :math:`R`:

  .. math::
    B_0 = \\max\\{B \\le \\max(R, \\mathcal B / s)\\}, \\qquad
    B_{\\max} = \\max\\{B \\le \\min(R b K,\\; N/10,\\; s\\,\\mathcal B_{+})\\}

  where :math:`\\mathcal B_+` is the noise scale the batch may grow to. By
  McCandlish et al.'s model, training to a loss takes
  :math:`S = S_{\\min}(1 + \\mathcal B / B)` updates and
  :math:`E = E_{\\min}(1 + B / \\mathcal B)` examples: at
  :math:`B = \\mathcal B / s` the examples are within :math:`1 + 1/s` of
  their minimum, at :math:`B = s \\mathcal B` the updates within
  :math:`1 + 1/s` of theirs. The noise scale grows as the loss falls
  (McCandlish et al., figure 4), so the batch may grow past the probe's
  :math:`\\mathcal B` up to the hardware cap and Smith et al.'s
  :math:`N/10`; :math:`\\mathcal B_+ = \\infty` here (the caps decide).

  The peak LR scales the range test's LR :math:`\\eta_p` (at batch
  :math:`B_p`) to :math:`B_0`: :math:`\\eta_0 = \\eta_p B_0 / B_p` (linear,
  SGD-like) or :math:`\\eta_p \\sqrt{B_0 / B_p}` (sqrt, adaptive). When
  :math:`\\eta_0 > \\eta_p` the LR starts at :math:`\\eta_p` and warms up
  linearly over Goyal et al.'s share of the budget, 5/90. Adaptive
  optimizers (the sqrt family) warm up linearly from 0 over Ma & Yarats's
  untuned :math:`2 / (1 - \\beta_2)` updates at :math:`B_0` (the
  variance of Adam's early second-moment estimate), or Goyal's share if
  longer, at most half the budget.

  The decay: Smith's increase-the-batch ramp
  (:func:`lrjax.batch.from_lr_decay` of a step decay by 5 at 30, 60 and
  80% of the budget, capped at :math:`C`: the hybrid, the LR decays where
  the batch stops) reaches the same accuracy in fewer updates, but only
  where each stage keeps many updates (the equivalence is an SDE limit):
  :math:`C` is the largest size :math:`\\le B_{\\max}` whose stages
  :math:`B_j = \\min(5^j B_0, C)` over fractions :math:`f_j` of the
  :math:`E` examples (:func:`ramp_stages`) all keep

  .. math::
    f_j E / B_j \\ge S_{\\min} = 100

  updates (``MIN_STAGE_UPDATES``; Smith et al.'s shortest stage kept 125),
  and the ramp is used when :math:`C \\ge 5 B_0` (the batch grows by
  Smith's factor at least once); else, when ``continuable``,
  warmup-stable-decay with a 20% 1-sqrt cooldown (its stable phase can be
  extended; Hägele et al. 2024); else a cosine to 0.

  A wall-clock budget (``Budget(seconds=S)``) becomes examples through the
  measured time per update, :math:`t(B) = a + c B`
  (:func:`step_time_model`; assumed affine in the batch: a fixed cost per
  update plus a cost per example, which also holds for batches above the
  device cap when they accumulate micro-batches of the largest size).
  Each candidate cap :math:`C` is then checked on its own examples: with
  its stages' batches :math:`B_j` over fractions :math:`f_j` (else
  :math:`B_0` over all), training on :math:`E` examples takes
  :math:`E \\sum_j f_j t(B_j) / B_j` seconds, so

  .. math::
    E = S \\Big/ \\sum_j f_j \\, \\frac{t(B_j)}{B_j}.

  The probes' cost is then in seconds: :math:`\\sum_B n_B\\, t(B)` over
  their ``probe_updates`` :math:`n_B` at batch :math:`B`.

  Args:
    probe_lr: the range test's suggested LR :math:`\\eta_p`, > 0.
    probe_batch: the batch :math:`B_p` it was measured at.
    b_simple: the measured noise scale, > 0.
    num_examples: the training set's size N.
    budget: the training budget.
    optimizer: the optimizer (its family picks the scaling rule).
    momentum: the momentum (Smith's ramp keeps it).
    b2: the Adam family's second-moment decay :math:`\\beta_2` (its
      warmup), in [0, 1).
    num_devices: R, devices of data parallelism.
    max_device_batch: b, the largest per-device batch (None: no cap).
    max_accumulation: K, accumulation steps allowed beyond b.
    spread: s > 1.
    continuable: prefer a schedule that can be extended (WSD).
    probe_examples: examples the probes used (for the cost report).
    step_seconds: measured seconds per update by batch size (needed for a
      wall-clock budget; :func:`step_time_model`).
    probe_updates: the probes' updates by batch size (for the cost in
      seconds, at the measured time per update).

  Returns:
    The :class:`Recipe`.

  Raises:
    ValueError: naming the argument, for non-positive measurements, sizes
      or budget, or ``spread <= 1``.

  Examples:
    >>> r = decide(probe_lr=0.05, probe_batch=32, b_simple=300.0,
    ...            num_examples=20000, budget=Budget(epochs=20),
    ...            max_device_batch=1024)
    >>> print(r.start_batch, r.max_batch, r.decay)
    128 1024 ramp
    >>> print(r.batch)
    stages(128@6,640@6,1024@8,n=20000)
    >>> print(r.lr)  # doctest: +NORMALIZE_WHITESPACE
    warmup(multistep(0.2,milestones=12/16,factors=0.32/0.2),length=1.111,start=0.25,shift=false)

  References:
    McCandlish et al. 2018, "An Empirical Model of Large-Batch Training".
    Goyal et al. 2017, "Accurate, Large Minibatch SGD".
    Smith, Kindermans, Ying, Le 2018, "Don't Decay the Learning Rate,
    Increase the Batch Size". Hägele et al. 2024, "Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations". Ma &
    Yarats 2021, "On the Adequacy of Untuned Warmup for Adaptive
    Optimization".
  """
  for name, value in (
    ('probe_lr', probe_lr),
    ('b_simple', b_simple),
    ('spread', spread - 1),
  ):
    if not (math.isfinite(value) and value > 0):
      raise ValueError(
        f'{name}={value!r} must be finite and > 0'
        if name != 'spread'
        else f'spread={spread!r} must be > 1'
      )
  for name, value in (
    ('probe_batch', probe_batch),
    ('num_examples', num_examples),
    ('num_devices', num_devices),
    ('max_accumulation', max_accumulation),
  ):
    if int(value) != value or value < 1:
      raise ValueError(f'{name}={value!r} must be an integer >= 1')
  if not 0 <= b2 < 1:
    raise ValueError(f"{b2=} must be in [0, 1) (Adam's beta2)")
  if max_device_batch is not None and max_device_batch < 1:
    raise ValueError(f'{max_device_batch=} must be >= 1 (or None: no cap)')
  rule = scaling_rule(optimizer)
  n = int(num_examples)
  budget_name, _ = budget.validate()
  model = None if step_seconds is None else step_time_model(step_seconds)
  if budget_name == 'seconds' and model is None:
    budget.to_examples(n)  # raises, naming step_seconds
  reasons = []

  start, top, hardware = batch_range(
    b_simple,
    n,
    num_devices=num_devices,
    max_device_batch=max_device_batch,
    max_accumulation=max_accumulation,
    spread=spread,
  )
  reasons.append(
    f'start batch {start}: the largest size (devices x 2^j) <= B_simple/'
    f'{spread:g} = {b_simple / spread:.4g}, where examples are within '
    f'{1 + 1 / spread:.3g}x of their minimum (McCandlish et al.)'
  )
  reasons.append(
    f'largest batch {top}: min(hardware {hardware}, N/10 = {n // 10} '
    '(Smith et al.)); the noise scale grows as the loss falls, so the '
    "batch may grow past the probe's B_simple"
  )

  def plan(stages):
    # The budget in examples over these stages, and seconds per example.
    if model is None:
      return budget.to_examples(n), None
    a, c = model
    per_example = sum(f * (a + c * b) / b for b, f in stages)
    return budget.to_examples(n, per_example), per_example

  # The largest cap (devices x 2^j <= top, >= 5 B_0) whose ramp keeps
  # MIN_STAGE_UPDATES updates in every stage.
  ramps, cap, short = False, top, None
  for cap in reversed(_realisable(num_devices, top)):
    if cap < 5 * start:
      break
    stages = ramp_stages(start, cap)
    budget_examples, seconds_per_example = plan(stages)
    updates = [f * budget_examples / b for b, f in stages]
    if min(updates) >= MIN_STAGE_UPDATES:
      ramps = True
      break
    short = (cap, stages, updates)  # the smallest cap that failed
  if not ramps:
    cap = top
    budget_examples, seconds_per_example = plan([(start, 1.0)])
  epochs = budget_examples / n
  if short is not None:
    b_cap, stages, updates = short
    least = min(range(len(stages)), key=lambda i: updates[i])
    reasons.append(
      f"Smith's ramp capped at {b_cap} would give its stage at batch "
      f'{stages[least][0]} only {updates[least]:.0f} updates (< '
      f'{MIN_STAGE_UPDATES}: the equivalence with an LR decay is an SDE '
      "limit of many small updates; Smith et al.'s shortest stage kept "
      '125)' + (f', so the batch stops at {cap}' if ramps else '')
    )
  if budget_name == 'seconds':
    reasons.append(
      f'budget {budget.seconds:g} s = {budget_examples:.0f} examples '
      f'({epochs:.4g} epochs): the measured time per update, fitted as '
      f'{model[0]:.3g} s + {model[1]:.3g} s x batch (assumed affine in the '
      'batch), gives '
      f'{seconds_per_example:.3g} s per example over the schedule below'
    )

  ratio = start / probe_batch
  peak = probe_lr * (ratio if rule == 'linear' else math.sqrt(ratio))
  peak = _round(peak)
  reasons.append(
    f"peak LR {peak:.4g}: {rule} scaling ({optimizer}) of the range test's "
    f'{probe_lr:.4g} at batch {probe_batch} to batch {start}'
  )
  warm, start_factor = 0.0, 1.0
  goyal = _round(GOYAL_WARMUP_FRACTION * epochs)
  scaled_up = peak > probe_lr * (1 + 1e-9)
  if rule == 'sqrt':
    updates = 2 / (1 - b2)
    warm = _round(
      min(
        max(updates * start / n, goyal if scaled_up else 0.0),
        MAX_WARMUP_FRACTION * epochs,
      )
    )
    start_factor = 0.0
    reasons.append(
      f'warmup {warm:g} epochs from 0: {optimizer} warms up over '
      f'2/(1 - beta2) = {updates:.4g} updates (Ma & Yarats)'
      + (
        ', or 5/90 of the budget if longer (Goyal et al.)' if scaled_up else ''
      )
      + f', at most {MAX_WARMUP_FRACTION:g} of the budget'
    )
  elif scaled_up:
    warm = goyal
    start_factor = _round(probe_lr / peak)
    reasons.append(
      f'warmup {warm:g} epochs from {probe_lr:.4g} (5/90 of the budget, '
      'as Goyal et al.): the scaled LR was not tested by the probe'
    )

  if ramps:
    ramp = lbatch.from_lr_decay(
      peak,
      start,
      n,
      milestones=[_round(f * epochs) for f in SMITH_MILESTONES],
      factors=SMITH_FACTOR,
      num_epochs=_round(epochs),
      momentum=momentum,
      max_batch_size=cap,
      multiple_of=num_devices,
    )
    policy = ramp.lr
    batch_text = str(ramp.batch_schedule)
    decay = 'ramp'
    reasons.append(
      f"decay: Smith's increase-the-batch ramp (batch x5 at 30/60/80% of "
      f'the budget, capped at {cap}, the LR takes the rest): the batch can '
      f'grow {cap / start:g}x with >= {MIN_STAGE_UPDATES} updates a stage, '
      'so it saves updates at equal epochs'
    )
    if warm:
      policy = schedules.warmup(
        policy, length=warm, start=start_factor, shift=False
      )
  else:
    no_ramp = (
      f'the batch can grow only {top / start:g}x (< 5)'
      if short is None
      else f'no x5 growth keeps {MIN_STAGE_UPDATES} updates a stage'
    )
    total = _round(epochs)
    batch_text = f'stages({start}@{total:g},n={n})'
    if continuable:
      cooldown = _round(WSD_COOLDOWN_FRACTION * total)
      policy = schedules.wsd(
        peak,
        length=total,
        cooldown=cooldown,
        warmup=warm,
        start=start_factor,
        shape='sqrt',
      )
      decay = 'wsd'
      reasons.append(
        f'decay: WSD, 20% 1-sqrt cooldown (Hägele et al.); {no_ramp}, and '
        'the stable phase can be extended'
      )
    else:
      decay = 'cosine'
      policy = schedules.cosine(peak, length=_round(total - warm))
      if warm:
        policy = schedules.warmup(policy, length=warm, start=start_factor)
      reasons.append(f"decay: cosine to 0; {no_ramp}, no Smith's ramp")
  return Recipe(
    lr=str(policy),
    batch=batch_text,
    decay=decay,
    peak_lr=peak,
    start_batch=int(start),
    max_batch=int(cap),
    rule=rule,
    warmup_epochs=warm,
    probe_lr=float(probe_lr),
    probe_batch=int(probe_batch),
    b_simple=float(b_simple),
    budget_examples=budget_examples,
    probe_examples=float(probe_examples),
    reasons=tuple(reasons),
    budget_seconds=budget.seconds,
    seconds_per_example=seconds_per_example,
    probe_seconds=(
      0.0
      if model is None
      else sum(
        k * (model[0] + model[1] * b) for b, k in (probe_updates or {}).items()
      )
    ),
  )


__all__ = [
  'Budget',
  'Recipe',
  'decide',
  'ramp_stages',
  'scaling_rule',
  'step_time_model',
]
