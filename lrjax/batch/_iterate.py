"""Walking a plan update by update: what a training loop needs to know."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import NamedTuple

from lrjax.batch._plan import AccumulationPlan


class Update(NamedTuple):
  """One optimizer update of a plan, as a hand-written loop sees it.

  Attributes:
    index: the update's index u (0-based; ``index + 1`` updates are done
      after it).
    epoch: epochs seen before the update, ``examples / N`` (pass it as
      ``epoch=`` to state-based policies; it is the epoch the trainer
      gives the step).
    examples: examples seen before the update (exact int).
    stage: the stage's index.
    batch_size: the global batch B of the update.
    micro_batch: examples per device per micro-step m.
    accum_steps: micro-steps of the update k (``D m k = B``).
    stage_changed: whether the update is the first of its stage (and not
      the loop's first update): compile or switch to the stage's step.
  """

  index: int
  epoch: float
  examples: int
  stage: int
  batch_size: int
  micro_batch: int
  accum_steps: int
  stage_changed: bool


def updates(
  plan: AccumulationPlan, start: int = 0, stop: int | None = None
) -> Iterator[Update]:
  """Yields every update of ``plan`` from ``start`` (a resumed run) on.

  Args:
    plan: the accumulation plan (:func:`lrjax.batch.plan`).
    start: the first update (updates already done).
    stop: the end (exclusive; None = the schedule's last update).

  Yields:
    :class:`Update` records, exact host ints.

  Raises:
    ValueError: for ``start`` or ``stop`` out of range.

  Examples:
    >>> from lrjax import batch
    >>> s = batch.parse('stages(4@1,8@1,n=8)')
    >>> for u in updates(batch.plan(s, num_replicas=1, max_device_batch=4)):
    ...   print(u.index, u.epoch, u.batch_size, u.accum_steps, u.stage_changed)
    0 0.0 4 1 False
    1 0.5 4 1 False
    2 1.0 8 2 True
  """
  schedule = plan.batch_schedule
  total = schedule.num_updates
  stop = total if stop is None else stop
  if not 0 <= start <= stop <= total:
    raise ValueError(
      f'need 0 <= start={start} <= stop={stop} <= {total} (the '
      "schedule's updates)"
    )
  n = schedule.num_examples
  boundaries = schedule.boundaries
  examples = schedule.examples_at(start)
  stage = max(bisect.bisect_right(boundaries, start) - 1, 0)
  for u in range(start, stop):
    while stage + 1 < len(plan.stages) and u >= boundaries[stage + 1]:
      stage += 1
    sp = plan.stages[stage]
    yield Update(
      index=u,
      epoch=examples / n,
      examples=examples,
      stage=stage,
      batch_size=sp.batch_size,
      micro_batch=sp.micro_batch,
      accum_steps=sp.accum_steps,
      stage_changed=u != start and u == boundaries[stage],
    )
    examples += sp.batch_size
