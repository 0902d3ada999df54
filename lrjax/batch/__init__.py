"""Batch-size schedules: training progress in examples seen, not updates.

Under a batch ramp, optimizer updates and epochs stop being proportional, so
every policy in lrjax is a function of *examples seen* (equivalently epochs,
examples / N). A :class:`BatchSchedule` is the one object that maps an update
count to examples seen and back:

- a schedule is a list of :class:`Stage` s, each a batch size held for a
  duration in epochs, examples or updates;
- stage durations add up to cumulative targets in examples; a stage ends at
  the first update boundary at which the examples seen reach its target, so a
  boundary inside a batch moves to the end of that batch and rounding never
  drifts (after every stage the examples seen are within one batch of the
  nominal total);
- the bookkeeping is exact (Python ints) on the host; the jit-safe methods
  (``batch_size_at``, ``stage_at``, ``epoch_at``) look stages up in small
  constant tables and keep float32 precision up to 2**31 updates;
- :func:`per_update` turns any policy over epochs (LR, momentum, weight
  decay) into an ordinary ``optax.Schedule`` over real updates;
- :func:`plan` derives per-stage micro-batches and accumulation steps, and the
  ``every_k_schedule`` for ``optax.MultiSteps``; :func:`updates` walks a
  plan update by update for a hand-written loop (stage, epoch, examples,
  micro-batch, accumulation, stage changes);
- builders: :func:`from_lr_decay` / :func:`from_lr_policy` (Smith et al.
  2018: the batch ramp, or hybrid, equivalent to an LR decay),
  :func:`seesaw` (Meterez et al. 2025: its counterpart for Adam, LR x
  1/sqrt(alpha) and batch x alpha where the LR would fall by alpha, from a
  step decay or a discretised cosine),
  :func:`linear_ramp`, :func:`geometric_ramp`, :func:`cyclic`;
  :func:`round_batch_size` and
  :func:`round_schedule` make batch sizes realisable and report the change
  of g;
- text form: ``str(schedule)`` and :func:`parse`, e.g.
  ``stages(128@60,640@60,3200@80,n=50000)``;
- tokens as a unit (language models, examples are sequences of ``seq``
  tokens): the text form takes token counts, ``32Kitok@4Gtok`` with
  ``seq=2048``, and a GPT-3-style ramp ``linear_ramp(start=32Kitok,
  stop=512Kitok, ramp=4Gtok, total=300Gtok, seq=2048)``, converted exactly
  to sequences; :func:`to_text` prints a schedule in tokens,
  :func:`to_sequences`, :func:`to_epochs` (a token budget in epochs),
  :func:`format_count` / :func:`parse_count` and
  :func:`with_tokens` (metrics records) do the same outside the text.
"""

from lrjax.batch._builders import LrDecayRamp as LrDecayRamp
from lrjax.batch._builders import SeesawRamp as SeesawRamp
from lrjax.batch._builders import cyclic as cyclic
from lrjax.batch._builders import from_lr_decay as from_lr_decay
from lrjax.batch._builders import from_lr_policy as from_lr_policy
from lrjax.batch._builders import geometric_ramp as geometric_ramp
from lrjax.batch._builders import linear_ramp as linear_ramp
from lrjax.batch._builders import round_batch_size as round_batch_size
from lrjax.batch._builders import round_schedule as round_schedule
from lrjax.batch._builders import seesaw as seesaw
from lrjax.batch._convert import per_update as per_update
from lrjax.batch._iterate import Update as Update
from lrjax.batch._iterate import updates as updates
from lrjax.batch._plan import AccumulationPlan as AccumulationPlan
from lrjax.batch._plan import StagePlan as StagePlan
from lrjax.batch._plan import plan as plan
from lrjax.batch._schedule import BatchSchedule as BatchSchedule
from lrjax.batch._schedule import Stage as Stage
from lrjax.batch._text import parse as parse
from lrjax.batch._text import to_text as to_text
from lrjax.batch._tokens import format_count as format_count
from lrjax.batch._tokens import parse_count as parse_count
from lrjax.batch._tokens import to_epochs as to_epochs
from lrjax.batch._tokens import to_sequences as to_sequences
from lrjax.batch._tokens import with_tokens as with_tokens

__all__ = [
  'AccumulationPlan',
  'BatchSchedule',
  'LrDecayRamp',
  'SeesawRamp',
  'Stage',
  'StagePlan',
  'Update',
  'cyclic',
  'format_count',
  'from_lr_decay',
  'from_lr_policy',
  'geometric_ramp',
  'linear_ramp',
  'parse',
  'parse_count',
  'per_update',
  'updates',
  'plan',
  'round_batch_size',
  'round_schedule',
  'seesaw',
  'to_epochs',
  'to_sequences',
  'to_text',
  'with_tokens',
]
