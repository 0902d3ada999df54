"""The byte-level language model as a trainer task."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lrjax.train import Task


def lm_train_loss(logits: Any, batch: Mapping[str, Any]) -> tuple[Any, dict]:
  """:func:`lrjax.lm.lm_loss` without its ``loss`` metric (the trainer logs
  the loss itself): mean next-byte cross-entropy in nats, with bits per
  byte and accuracy."""
  from lrjax import lm

  loss, metrics = lm.lm_loss(logits, batch)
  return loss, {k: v for k, v in metrics.items() if k != 'loss'}


def language_model(
  train_data: Any,
  eval_data: Any = None,
  *,
  config: Any = None,
  seed: int = 0,
  params: Any = None,
  eval_metrics: Callable[..., Mapping[str, Any]] | None = None,
  name: str = 'lm',
) -> Task:
  """:class:`lrjax.lm.Transformer` on byte-token sequences.

  Examples are sequences (``{'tokens': int32 [T + 1]}``, e.g. a
  :class:`lrjax.data.TextDataset`); tokens are a derived unit for logs,
  schedules and the noise scale (``seq_len`` in ``info``).

  Args:
    train_data: training sequences.
    eval_data: evaluation sequences (None: no evaluation).
    config: a :class:`lrjax.lm.TransformerConfig` (None: its defaults).
    seed: seeds the parameters (``nnx.Rngs(params=seed)``) and the dropout
      stream (``seed + 1``).
    params: parameters to start from (a pure dict, as the trainer's
      checkpoints hold them: fine-tuning), or None for a fresh model.
    eval_metrics: per-sequence evaluation metrics (None:
      :func:`lrjax.lm.lm_eval_metrics`: loss, bits per byte, accuracy).
    name: the task's name.

  Returns:
    The Task (inputs :func:`lrjax.lm.lm_inputs`, loss
    :func:`lm_train_loss`).

  Examples:
    >>> from lrjax import data, lm
    >>> train = data.TextDataset.from_text('abcdefgh' * 40, seq_len=8)
    >>> task = language_model(
    ...     train, config=lm.TransformerConfig(
    ...         num_layers=1, num_heads=2, width=16, seq_len=8))
    >>> task.num_train, task.info['seq_len']
    (39, 8)
  """
  from flax import nnx

  from lrjax import lm

  config = lm.TransformerConfig() if config is None else config
  model = lm.Transformer(config, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
  if params is not None:
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
  seq_len = getattr(train_data, 'seq_len', None)
  return Task(
    model=model,
    loss=lm_train_loss,
    train_data=train_data,
    eval_data=eval_data,
    inputs=lm.lm_inputs,
    eval_metrics=eval_metrics or lm.lm_eval_metrics,
    name=name,
    info={
      'vocab_size': int(config.vocab_size),
      **({} if seq_len is None else {'seq_len': int(seq_len)}),
    },
  )
