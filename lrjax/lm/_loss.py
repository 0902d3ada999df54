"""The causal language-modelling loss and its evaluation metrics."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

_LN2 = math.log(2.0)


def lm_inputs(batch: dict) -> jax.Array:
  """The model input of a batch of windows: ``tokens[:, :-1]``.

  Args:
    batch: ``{'tokens': int [B, T + 1]}`` (as `lrjax.data.TextDataset`
      yields it).

  Returns:
    int ``[B, T]``.
  """
  return batch['tokens'][:, :-1]


def _token_losses(logits: jax.Array, batch: dict) -> tuple[jax.Array, ...]:
  targets = batch['tokens'][:, 1:]
  if logits.ndim != 3 or logits.shape[:2] != targets.shape:
    raise ValueError(
      f'logits.shape={logits.shape} must be [B, T, V] with [B, T] = '
      f"batch['tokens'][:, 1:].shape = {targets.shape}: feed the model "
      'lm_inputs(batch), the tokens without the last one'
    )
  logits = logits.astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return losses, correct


def lm_loss(
  logits: jax.Array, batch: dict, *, bytes_per_token: float = 1.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean next-token cross-entropy in nats, and metrics.

  With targets :math:`y_{b,t}` = ``tokens[b, t + 1]`` and
  :math:`p_{b,t}` the softmax of the logits at position :math:`t`,

  .. math::
    \\mathcal{L} = -\\frac{1}{BT} \\sum_{b,t} \\ln p_{b,t}(y_{b,t}),
    \\qquad \\mathrm{bpb} = \\frac{\\mathcal{L}}{\\ln 2 \\cdot
    \\text{bytes per token}}.

  Args:
    logits: float ``[B, T, V]``, the model's output on `lm_inputs`.
    batch: ``{'tokens': int [B, T + 1]}``.
    bytes_per_token: UTF-8 bytes per token: 1 for byte tokens (bits per
      byte is then bits per token).

  Returns:
    ``(loss, metrics)``: the scalar loss and ``{'loss', 'bits_per_byte',
    'accuracy'}`` scalars (accuracy: the fraction of targets that are the
    arg-max of the logits).

  Raises:
    ValueError: if the logits do not match the targets' shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> batch = {'tokens': jnp.array([[0, 1, 1]])}
    >>> loss, m = lm_loss(jnp.zeros((1, 2, 4)), batch)  # uniform over 4
    >>> print(f'{float(loss):.4f} {float(m["bits_per_byte"]):.4f}')
    1.3863 2.0000
  """
  losses, correct = _token_losses(logits, batch)
  loss = jnp.mean(losses)
  return loss, {
    'loss': loss,
    'bits_per_byte': loss / (_LN2 * bytes_per_token),
    'accuracy': jnp.mean(correct),
  }


def lm_eval_metrics(
  logits: jax.Array,
  batch: dict,
  *,
  bytes_per_token: float = 1.0,
  confidence: bool = False,
) -> dict[str, jax.Array]:
  """Per-example evaluation metrics: loss, bits per byte, accuracy.

  Each is the mean over the example's :math:`T` targets, float32 ``[B]``,
  so that the mean over examples of equal length is the mean over tokens:

  .. math::
    \\mathrm{loss}_b = -\\frac{1}{T} \\sum_t \\ln p_{b,t}(y_{b,t}), \\qquad
    \\mathrm{bpb}_b = \\frac{\\mathrm{loss}_b}{\\ln 2 \\cdot
    \\text{bytes per token}}.

  Perplexity is :func:`perplexity` of the mean loss, not a mean of
  per-example perplexities.

  Args:
    logits: float ``[B, T, V]``.
    batch: ``{'tokens': int [B, T + 1]}``.
    bytes_per_token: as in :func:`lm_loss`.
    confidence: also :func:`confidence_metrics` (LRBench++).

  Returns:
    ``{'loss', 'bits_per_byte', 'accuracy'}`` and, with ``confidence``,
    ``'confidence'`` and ``'correct_confidence'``, float32 ``[B]`` each.

  Raises:
    ValueError: if the logits do not match the targets' shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> m = lm_eval_metrics(jnp.zeros((3, 2, 4)), {'tokens': jnp.ones((3, 3), int)})
    >>> m['bits_per_byte'].tolist()
    [2.0, 2.0, 2.0]
    >>> m = lm_eval_metrics(
    ...     jnp.zeros((1, 2, 4)), {'tokens': jnp.ones((1, 3), int)},
    ...     confidence=True)
    >>> m['confidence'].tolist()  # uniform over 4
    [0.25]

  References:
    Jin et al. 2023, "Rethinking Learning Rate Tuning in the Era of Large
    Language Models" (LRBench++: the confidence metrics).
  """
  losses, correct = _token_losses(logits, batch)
  loss = jnp.mean(losses, axis=1)
  metrics = {
    'loss': loss,
    'bits_per_byte': loss / (_LN2 * bytes_per_token),
    'accuracy': jnp.mean(correct, axis=1),
  }
  if confidence:
    metrics.update(confidence_metrics(logits, batch))
  return metrics


def confidence_metrics(logits: jax.Array, batch: dict) -> dict[str, jax.Array]:
  r"""Per-example confidence of the next-token predictions (LRBench++).

  With :math:`p_t` the largest predicted probability at position :math:`t`
  and :math:`c_t` whether its token is the target,

  .. math::
    \mathrm{confidence} = \frac{1}{T}\sum_t p_t, \qquad
    \mathrm{correct\_confidence} = \frac{1}{T}\sum_t c_t\, p_t,

  so that over a split the mean ``correct_confidence`` over the mean
  accuracy is the mean confidence on the correctly predicted tokens.

  Args:
    logits: float ``[B, T, V]``.
    batch: ``{'tokens': int [B, T + 1]}``.

  Returns:
    ``{'confidence', 'correct_confidence'}``, float32 ``[B]`` each.

  Examples:
    >>> logits = jnp.log(jnp.array([[[3.0, 1.0], [1.0, 1.0]]]))
    >>> m = confidence_metrics(logits, {'tokens': jnp.array([[1, 0, 1]])})
    >>> [round(float(m[k][0]), 6) for k in ('confidence', 'correct_confidence')]
    [0.625, 0.375]

  References:
    Jin et al. 2023, "Rethinking Learning Rate Tuning in the Era of Large
    Language Models" (LRBench++).
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  top = jnp.max(probs, axis=-1)
  correct = jnp.argmax(logits, axis=-1) == batch['tokens'][:, 1:]
  return {
    'confidence': jnp.mean(top, axis=1),
    'correct_confidence': jnp.mean(jnp.where(correct, top, 0.0), axis=1),
  }


def perplexity(loss: jax.typing.ArrayLike) -> jax.Array:
  """Perplexity of a mean next-token loss in nats, :math:`e^{\\mathcal{L}}`.

  Examples:
    >>> float(perplexity(jnp.log(256.0)))  # uniform over 256 bytes
    256.0...
  """
  return jnp.exp(jnp.asarray(loss, jnp.float32))
