"""Image classification: the task of a model on labelled images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lrjax.train import Task


def classification_loss(
  outputs: jax.Array, batch: Mapping[str, Any]
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean softmax cross-entropy of logits against ``batch['label']``, and
  the accuracy.

  .. math::
     L = -\\frac{1}{B}\\sum_i \\log \\operatorname{softmax}(z_i)_{y_i}

  Examples:
    >>> import numpy as np
    >>> logits = np.log(np.array([[0.5, 0.5], [0.9, 0.1]], np.float32))
    >>> loss, m = classification_loss(logits, {'label': np.array([0, 1])})
    >>> print(f'{float(loss):.4f} {float(m["accuracy"]):.1f}')  # ln 2, ln 10
    1.4979 0.5
  """
  logits, labels = outputs.astype(jnp.float32), batch['label']
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  return loss, {'accuracy': accuracy}


def classification_eval(
  outputs: jax.Array, batch: Mapping[str, Any]
) -> dict[str, jax.Array]:
  """Per-example loss, accuracy and (from 5 classes) top-5 accuracy."""
  logits, labels = outputs.astype(jnp.float32), batch['label']
  out = {
    'loss': optax.softmax_cross_entropy_with_integer_labels(logits, labels),
    'accuracy': (jnp.argmax(logits, -1) == labels).astype(jnp.float32),
  }
  if logits.shape[-1] >= 5:
    top5 = jax.lax.top_k(logits, 5)[1]
    out['top5_accuracy'] = jnp.any(top5 == labels[:, None], axis=-1).astype(
      jnp.float32
    )
  return out


def classification(
  model: Any,
  train_data: Any,
  eval_data: Any = None,
  name: str = 'task',
  num_classes: int | None = None,
) -> Task:
  """An image-classification task: ``model(batch['image'])`` -> logits,
  cross-entropy loss, accuracy (and top-5) metrics.

  Args:
    model: anything :func:`lrjax.train.as_model` takes (an NNX or linen
      module, ``(init, apply)``, a ``Model``).
    train_data: batches with ``image`` and integer ``label``.
    eval_data: the test split (None: no evaluation).
    name: the task's name.
    num_classes: recorded in ``info`` (default: the data's ``num_classes``
      attribute, if any).

  Returns:
    The Task.
  """
  if num_classes is None:
    num_classes = getattr(train_data, 'num_classes', None)
  return Task(
    model=model,
    loss=classification_loss,
    train_data=train_data,
    eval_data=eval_data,
    inputs='image',
    eval_metrics=classification_eval,
    name=name,
    info={} if num_classes is None else {'num_classes': int(num_classes)},
  )


def image_classification(
  dataset: str = 'digits',
  model: str = 'mlp',
  *,
  data_dir: str | None = None,
  model_kwargs: Mapping[str, Any] | None = None,
  synthetic_examples: int = 1024,
  synthetic_shape: tuple[int, int, int] = (8, 8, 1),
  synthetic_classes: int = 10,
  seed: int = 0,
) -> Task:
  """A model of the zoo (:mod:`lrjax.models`) on a named dataset.

  Args:
    dataset: 'digits' (bundled), a TFDS name prepared under ``data_dir``
      (:func:`lrjax.data.load`), or 'synthetic'
      (:func:`lrjax.data.synthetic`: ``synthetic_examples`` training
      examples, a quarter as many test examples).
    model: a name :func:`lrjax.models.get` knows ('mlp', 'cnn', 'wrn16_4').
    data_dir: where datasets live (None: TFDS's default).
    model_kwargs: extra keyword arguments of the model builder.
    synthetic_examples: training examples of 'synthetic'.
    synthetic_shape: image shape (H, W, C) of 'synthetic'.
    synthetic_classes: classes of 'synthetic'.
    seed: the seed of 'synthetic''s draw (other datasets ignore it; the
      parameters are seeded by ``TrainConfig.seed``).

  Returns:
    The Task, named ``'<model> on <dataset>'``.

  Raises:
    ValueError: for an unknown model or dataset (naming the known ones).
    FileNotFoundError: for a TFDS dataset not prepared in ``data_dir``.

  Examples:
    >>> import tempfile
    >>> task = image_classification('digits', 'mlp',
    ...                             data_dir=tempfile.mkdtemp())
    >>> task.name, task.num_train, task.info['num_classes']
    ('mlp on digits', 1437, 10)
  """
  from lrjax import data, models

  if model not in models.NAMES:
    raise ValueError(
      f'unknown model {model!r}; known names: {", ".join(models.NAMES)}'
    )
  if dataset == 'synthetic':
    kw = dict(
      image_shape=tuple(synthetic_shape),
      num_classes=synthetic_classes,
      seed=seed,
    )
    train = data.synthetic(synthetic_examples, split='train', **kw)
    test = data.synthetic(max(synthetic_examples // 4, 1), split='test', **kw)
  else:
    train = data.load(dataset, split='train', data_dir=data_dir)
    test = data.load(dataset, split='test', data_dir=data_dir)
  net = models.get(
    model, num_classes=train.num_classes, **dict(model_kwargs or {})
  )
  return classification(net, train, test, name=f'{model} on {dataset}')
