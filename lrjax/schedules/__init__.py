"""Learning-rate (and any scalar hyperparameter) policies as optax schedules.

One vocabulary for every policy:

- `t` is *progress*. Used directly as an `optax.Schedule` (for example
  `optax.sgd(learning_rate=policy)` or through `optax.inject_hyperparams`),
  `t` is the update count, starting at 0 for the first update. Converted by
  `lrjax.batch.per_update(policy, batch_schedule)`, `t` is the epoch (a float:
  examples seen / dataset size), which stays right when the batch size
  changes. `t` may be a Python int or float, or a traced int32/float32 value.
- Every duration argument (`length`, `period`, `milestones`, `boundaries`,
  `cooldown`, `warmup`, ...) is in the units of `t`; integer durations with
  integer `t` are computed in int32, so boundaries are exact up to 2**31 - 1.
- Durations never include a warmup added with `warmup(...)` unless it is
  built with `shift=False` (then the inner policy sees the global t); `wsd`'s
  `length` is the total and includes its own warmup and cooldown.
- A warmup never uses 0 on the first update unless asked (`start=0`).
- Every policy is a frozen, hashable `Policy`; `str(policy)` is its text form
  (short enough for one flag) and `parse(text)` reads it back:
  `parse(str(p))` prints the same text.

- `onecycle`'s default `offset=0` keeps its phase ends in units of t (right
  for epochs, like optax); `offset=1` is PyTorch's per-step convention.

The policies and their text names (aliases parse to the canonical name):

- constant values and decays: `constant` (alias `fixed`), `step`,
  `multistep`, `exponential`, `inverse_time`, `polynomial`, `linear`,
  `sigmoid`, `cosine`, `tanh_decay`, `wsd` (warmup-stable-decay).
- restarts and cycles: `cosine_restarts` (SGDR), `onecycle`,
  `onecycle_momentum`, `triangular` (Smith's CLR; aliases `triangular2`,
  `exp_range`), `sine`, `cosine_cyclic`, `sawtooth` (LRBench's TRI, SIN,
  COS/UPCOS, RSW families with their "2", "EXP" and "D" variants).
- composition: `warmup`, `join` (alias `sequence`), `scale`, `clip`,
  `product`.
- state-based: `reduce_on_plateau`, `switch_on_plateau`.

Formula-based policies are closed forms in `t`; the state-based ones
(`reduce_on_plateau`, `switch_on_plateau`) are optax stateful schedules that
decide once per completed epoch on the mean of the losses passed to
`tx.update(..., value=loss, epoch=epoch)`.
"""

from lrjax.schedules._compose import clip as clip
from lrjax.schedules._compose import join as join
from lrjax.schedules._compose import product as product
from lrjax.schedules._compose import scale as scale
from lrjax.schedules._compose import warmup as warmup
from lrjax.schedules._formula import constant as constant
from lrjax.schedules._formula import cosine as cosine
from lrjax.schedules._formula import cosine_cyclic as cosine_cyclic
from lrjax.schedules._formula import cosine_restarts as cosine_restarts
from lrjax.schedules._formula import exp_range as exp_range
from lrjax.schedules._formula import exponential as exponential
from lrjax.schedules._formula import inverse_time as inverse_time
from lrjax.schedules._formula import linear as linear
from lrjax.schedules._formula import multistep as multistep
from lrjax.schedules._formula import onecycle as onecycle
from lrjax.schedules._formula import onecycle_momentum as onecycle_momentum
from lrjax.schedules._formula import polynomial as polynomial
from lrjax.schedules._formula import sawtooth as sawtooth
from lrjax.schedules._formula import sigmoid as sigmoid
from lrjax.schedules._formula import sine as sine
from lrjax.schedules._formula import step as step
from lrjax.schedules._formula import tanh_decay as tanh_decay
from lrjax.schedules._formula import triangular as triangular
from lrjax.schedules._formula import triangular2 as triangular2
from lrjax.schedules._formula import wsd as wsd
from lrjax.schedules._policy import Policy as Policy
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
  'exp_range',
  'exponential',
  'fixed',
  'inverse_time',
  'join',
  'linear',
  'multistep',
  'onecycle',
  'onecycle_momentum',
  'parse',
  'polynomial',
  'product',
  'reduce_on_plateau',
  'sawtooth',
  'scale',
  'sequence',
  'sigmoid',
  'sine',
  'step',
  'switch_on_plateau',
  'tanh_decay',
  'triangular',
  'triangular2',
  'warmup',
  'wsd',
]
