"""The fine-tuning LR policies LRBench++ compares, by name."""

from __future__ import annotations

from collections.abc import Callable

from lrjax.schedules import _compose, _formula, _state
from lrjax.schedules._policy import Policy
from lrjax.schedules._state import ReduceOnPlateau


def _builders() -> dict[str, Callable[..., Policy | ReduceOnPlateau]]:
  """Each policy's builder ``(lr, length, warmup length) -> policy``."""
  warmup, linear, cosine = _compose.warmup, _formula.linear, _formula.cosine
  return {
    'constant': lambda lr, e, w: _formula.constant(lr),
    'linear': lambda lr, e, w: linear(lr, end=0.0, length=e),
    'cosine': lambda lr, e, w: cosine(lr, length=e),
    'warmup_constant': lambda lr, e, w: warmup(_formula.constant(lr), length=w),
    'warmup_cosine': lambda lr, e, w: warmup(
      cosine(lr, length=e - w), length=w
    ),
    'hf_warmup_linear': lambda lr, e, w: warmup(
      linear(lr, end=0.0, length=e - w), length=w, start=0.0
    ),
    'onecycle': lambda lr, e, w: _formula.onecycle(lr, length=e),
    'plateau': lambda lr, e, w: _state.reduce_on_plateau(
      lr, factor=0.5, patience=0, value_per='epoch'
    ),
  }


#: The names `finetune_policy` takes.
FINETUNE_POLICIES = tuple(_builders())


def finetune_policy(
  name: str, lr: float, length: float, warmup_fraction: float = 0.1
) -> Policy | ReduceOnPlateau:
  """The fine-tuning LR policy ``name`` at peak ``lr`` over ``length``.

  Jin et al. (2023) argue that the LR of fine-tuning a pretrained language
  model is tuned apart from training from scratch; these are policies to
  compare there, in the units of ``length`` (epochs, say). With :math:`L` the
  length, :math:`W = fL` the warmup (``warmup_fraction`` :math:`f`) and
  :math:`\\eta` the peak LR:

  .. math::
    \\text{linear}(t) = \\eta (1 - t / L), \\qquad
    \\text{hf\\_warmup\\_linear}(t) = \\begin{cases} \\eta t / W & t < W \\\\
    \\eta (L - t) / (L - W) & t \\ge W \\end{cases}

  ``constant``, ``cosine`` (to 0 at :math:`L`), ``warmup_constant`` and
  ``warmup_cosine`` (a linear warmup from :math:`0.1\\eta` over :math:`W`,
  then the policy over the remaining :math:`L - W`), ``hf_warmup_linear``
  (Hugging Face's ``get_linear_schedule_with_warmup``, whose warmup starts
  at 0), ``onecycle`` (`onecycle` over :math:`L`) and ``plateau``
  (PyTorch's ``ReduceLROnPlateau(factor=0.5, patience=0)``, stepped once per
  epoch).

  Args:
    name: one of `FINETUNE_POLICIES`.
    lr: the peak LR.
    length: the whole training, warmup included.
    warmup_fraction: the warmup of the ``warmup_*`` and ``hf_*`` policies,
      as a fraction of ``length`` (Alpaca's fine-tuning scripts use 0.03).

  Returns:
    The policy, a function of progress in the units of ``length`` (for
    ``plateau`` the stateful `ReduceOnPlateau`).

  Raises:
    ValueError: for a name not in `FINETUNE_POLICIES` or a
      ``warmup_fraction`` outside (0, 1).

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.finetune_policy('hf_warmup_linear', 1e-2, length=3.0)
    >>> print([round(float(s(t)), 6) for t in (0.0, 0.15, 0.3, 1.65, 3.0)])
    [0.0, 0.005, 0.01, 0.005, 0.0]

  References:
    Jin et al. Rethinking Learning Rate Tuning in the Era of Large Language
    Models. IEEE CogMI 2023 (LRBench++).
  """
  if name not in FINETUNE_POLICIES:
    raise ValueError(f'{name=} is not one of {FINETUNE_POLICIES}')
  if not 0 < warmup_fraction < 1:
    raise ValueError(f'{warmup_fraction=} must be in (0, 1)')
  return _builders()[name](lr, length, warmup_fraction * length)
