"""Learning-rate (and any scalar hyperparameter) policies as optax schedules.

One vocabulary for every policy:

- `t` is *progress*. Used directly as an `optax.Schedule` (for example
  `optax.sgd(learning_rate=policy)` or through `optax.inject_hyperparams`),
  `t` is the update count, starting at 0 for the first update. Converted by
  `lrjax.batch.per_update(policy, batch_schedule)`, `t` is the epoch (a float:
  examples seen / dataset size), which stays right when the batch size
  changes. `t` may be a Python int or float, or a traced int32/float32 value.
- The unit can be made explicit: `in_epochs(p)` marks a policy of epochs and
  `in_updates(p)` one of update counts (`noam` is one by construction);
  `Policy.unit` says which (None: unspecified, either use). `per_update`
  refuses a policy of updates, compositions refuse to mix units, and
  `in_updates` refuses a policy of epochs. The trainer converts a policy
  of epochs (or without a unit) with `per_update` and uses a policy of
  updates, or a plain optax schedule, as a schedule of the update count.
- In the text form a duration may carry a unit, in the batch text's
  vocabulary: `2ep`, `500up`, `64000ex`, `110Kitok`. `parse(text,
  batch_schedule, seq_len=...)` converts it exactly into the unit of the
  policy holding it (updates inside `in_updates`/`noam`, epochs
  elsewhere), or names the nearest exact counts.
- `Policy.durations()` lists a policy's duration arguments placed on its
  clock (the trainer warns when one does not fit the run).
- Every duration argument (`length`, `period`, `milestones`, `boundaries`,
  `cooldown`, `warmup`, ...) is in the units of `t`; integer durations with
  integer `t` are computed in int32, so boundaries are exact up to 2**31 - 1.
- Durations never include a warmup added with `warmup(...)` unless it is
  built with `shift=False` (then the inner policy sees the global t); `wsd`'s
  `length` is the total and includes its own warmup and cooldown.
- A warmup never uses 0 on the first update unless asked (`start=0`).
  `start` is always a factor of the value the warmup reaches; `end` is
  always an absolute value.
- Every policy is a frozen, hashable `Policy`; `str(policy)` is its text form
  (short enough for one flag) and `parse(text)` reads it back:
  `parse(str(p))` prints the same text.
- Compositions (`warmup`, `join`, `scale`, `clip`, `product`, `noise`,
  `switch_on_plateau`, `in_epochs`, `in_updates`) also take any plain
  callable of t, such as an `optax.Schedule`. The result has no text form:
  it prints the callable as `<callable NAME: no text form>`, `has_text` is
  False, and it cannot be pickled or parsed.
- Values are float32, evaluated in forms that keep float32's relative
  precision near a floor or a peak (sin^2 for raised cosines, sigmoid for
  tanh, powers without rounding the base first).

- `onecycle`'s default `offset=0` keeps its phase ends in units of t (right
  for epochs, like optax); `offset=1` is PyTorch's per-step convention.

The policies and their text names (aliases parse to the canonical name):

- constant values and decays: `constant` (alias `fixed`), `step`,
  `multistep`, `exponential` (also growth), `inverse_time`, `inverse_sqrt`,
  `noam`, `polynomial`, `linear`, `sigmoid`, `cosine`, `tanh_decay`, `wsd`
  (warmup-stable-decay).
- restarts and cycles: `cosine_restarts` (SGDR, timm's cosine),
  `tanh_restarts`, `onecycle`, `onecycle_momentum`, `triangular` (Smith's
  CLR; aliases `triangular2`, `exp_range`), `triangular_momentum`, `sine`,
  `cosine_cyclic`, `sawtooth` (LRBench's TRI, SIN, COS/UPCOS, RSW families
  with their "2", "EXP" and "D" variants).
- Seesaw (Adam's batch-for-LR trade): `seesaw`, the LR side, over
  `discretize` (the step decay a decaying policy amounts to).
- composition: `warmup`, `join` (alias `sequence`), `scale`, `clip`,
  `product`, `noise`, `in_epochs`, `in_updates`.
- state-based: `reduce_on_plateau`, `switch_on_plateau`.
- fine-tuning: `finetune_policy`, LRBench++'s policies by name
  (`FINETUNE_POLICIES`).

Formula-based policies are closed forms in `t`; the state-based ones
(`reduce_on_plateau`, `switch_on_plateau`) are optax stateful schedules that
decide once per completed epoch on a metric passed to
`tx.update(..., value=metric, epoch=epoch)`: the epoch mean of a per-update
metric such as the train loss, or a metric measured after each epoch such as
a validation accuracy (`value_per='epoch'`), minimised or maximised (`mode`).

optax's names, and the lrjax call that gives the same values (each row is
checked against optax in the tests). lrjax names durations `length`,
`period`, `warmup`... rather than `*_steps`, because they are in units of t:
updates when the policy is given to optax, epochs through `per_update`.
`init_value` and `peak_value` are the first argument, `value`; `end_value`
is `end` (absolute, as optax's); a warmup's `init_value` a is
`start=a / peak_value` (a factor):

==============================================  ==============================
optax                                           lrjax
==============================================  ==============================
constant_schedule(v)                            constant(v)
linear_schedule(a, b, transition_steps=n)       linear(a, end=b, length=n)
polynomial_schedule(a, b, power=p,              polynomial(a, length=n,
  transition_steps=n)                             end=b, power=p)
exponential_decay(a, transition_steps=n,        exponential(a, gamma=g,
  decay_rate=g, staircase=s, end_value=e)         length=n, staircase=s,
                                                  end=e)
cosine_decay_schedule(a, decay_steps=n,         cosine(a, length=n,
  alpha=r, exponent=p)                            end=r * a, exponent=p)
piecewise_constant_schedule(a, {b_i: f_i})      multistep(a, milestones=b,
                                                  factors=f)
warmup_constant_schedule(a, v, warmup_steps=w)  warmup(constant(v),
                                                  length=w, start=a / v)
warmup_cosine_decay_schedule(a, v,              warmup(cosine(v,
  warmup_steps=w, decay_steps=n,                  length=n - w, end=e,
  end_value=e, exponent=p)                        exponent=p), length=w,
                                                  start=a / v)
warmup_exponential_decay_schedule(a, v,         warmup(exponential(v,
  warmup_steps=w, transition_steps=n,             gamma=g, length=n,
  decay_rate=g, end_value=e)                      end=e), length=w,
                                                  start=a / v)
cosine_onecycle_schedule(transition_steps=n,    onecycle(v, length=n,
  peak_value=v, pct_start=q, div_factor=d,        pct_start=q,
  final_div_factor=f)                             div_factor=d,
                                                  final_div_factor=f)
join_schedules([s_i], boundaries=b)             join([p_i], boundaries=b)
any of these with transition_begin=b            join([constant(a), p],
                                                  boundaries=b)
==============================================  ==============================

Note `warmup_cosine_decay_schedule`'s `decay_steps` INCLUDES the warmup
(optax#835); lrjax's `cosine` after a `warmup` counts from the warmup's end,
hence `length=n - w`. timm, Hugging Face and PyTorch equivalents are given
in each builder's docstring (`cosine_restarts`, `tanh_restarts`, `noise`,
`wsd`, `inverse_sqrt`, `triangular_momentum`, `reduce_on_plateau`, ...).
"""

from lrjax.schedules._compose import clip as clip
from lrjax.schedules._compose import in_epochs as in_epochs
from lrjax.schedules._compose import in_updates as in_updates
from lrjax.schedules._compose import join as join
from lrjax.schedules._compose import noise as noise
from lrjax.schedules._compose import product as product
from lrjax.schedules._compose import scale as scale
from lrjax.schedules._compose import warmup as warmup
from lrjax.schedules._finetune import FINETUNE_POLICIES as FINETUNE_POLICIES
from lrjax.schedules._finetune import finetune_policy as finetune_policy
from lrjax.schedules._formula import constant as constant
from lrjax.schedules._formula import cosine as cosine
from lrjax.schedules._formula import cosine_cyclic as cosine_cyclic
from lrjax.schedules._formula import cosine_restarts as cosine_restarts
from lrjax.schedules._formula import exp_range as exp_range
from lrjax.schedules._formula import exponential as exponential
from lrjax.schedules._formula import inverse_sqrt as inverse_sqrt
from lrjax.schedules._formula import inverse_time as inverse_time
from lrjax.schedules._formula import linear as linear
from lrjax.schedules._formula import multistep as multistep
from lrjax.schedules._formula import noam as noam
from lrjax.schedules._formula import onecycle as onecycle
from lrjax.schedules._formula import onecycle_momentum as onecycle_momentum
from lrjax.schedules._formula import polynomial as polynomial
from lrjax.schedules._formula import sawtooth as sawtooth
from lrjax.schedules._formula import sigmoid as sigmoid
from lrjax.schedules._formula import sine as sine
from lrjax.schedules._formula import step as step
from lrjax.schedules._formula import tanh_decay as tanh_decay
from lrjax.schedules._formula import tanh_restarts as tanh_restarts
from lrjax.schedules._formula import triangular as triangular
from lrjax.schedules._formula import triangular2 as triangular2
from lrjax.schedules._formula import triangular_momentum as triangular_momentum
from lrjax.schedules._formula import wsd as wsd
from lrjax.schedules._policy import Policy as Policy
from lrjax.schedules._seesaw import discretize as discretize
from lrjax.schedules._seesaw import seesaw as seesaw
from lrjax.schedules._state import ReduceOnPlateau as ReduceOnPlateau
from lrjax.schedules._state import ReduceOnPlateauState as ReduceOnPlateauState
from lrjax.schedules._state import SwitchOnPlateau as SwitchOnPlateau
from lrjax.schedules._state import SwitchOnPlateauState as SwitchOnPlateauState
from lrjax.schedules._state import reduce_on_plateau as reduce_on_plateau
from lrjax.schedules._state import switch_on_plateau as switch_on_plateau
from lrjax.schedules._text import parse as parse

fixed = constant
sequence = join

__all__ = [
  'FINETUNE_POLICIES',
  'Policy',
  'ReduceOnPlateau',
  'ReduceOnPlateauState',
  'SwitchOnPlateau',
  'SwitchOnPlateauState',
  'clip',
  'constant',
  'cosine',
  'cosine_cyclic',
  'cosine_restarts',
  'discretize',
  'exp_range',
  'exponential',
  'finetune_policy',
  'fixed',
  'in_epochs',
  'in_updates',
  'inverse_sqrt',
  'inverse_time',
  'join',
  'linear',
  'multistep',
  'noam',
  'noise',
  'onecycle',
  'onecycle_momentum',
  'parse',
  'polynomial',
  'product',
  'reduce_on_plateau',
  'sawtooth',
  'scale',
  'seesaw',
  'sequence',
  'sigmoid',
  'sine',
  'step',
  'switch_on_plateau',
  'tanh_decay',
  'tanh_restarts',
  'triangular',
  'triangular2',
  'triangular_momentum',
  'warmup',
  'wsd',
]
