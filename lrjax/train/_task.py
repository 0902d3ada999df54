"""What the trainer trains: a task (model, loss, metrics, data).

The trainer owns *how* to train (stages, compilation, accumulation,
parallelism, noise scale, checkpoints, metrics); a :class:`Task` says *what*:

- ``model``: a :class:`Model` (two pure functions), or something
  :func:`as_model` turns into one: a Flax NNX module, a linen module, or a
  pair ``(init, apply)`` of plain functions;
- ``loss(outputs, batch) -> (loss, metrics)``: the mean loss of a batch and a
  dict of scalar metrics to log (averaged over the log interval);
- ``eval_metrics(outputs, batch) -> dict`` (optional): per-example values
  ``[B]``, averaged over the evaluation split (exact with padding); without
  it, evaluation averages ``loss`` and its metrics over the batches,
  weighted by their sizes;
- ``train_data`` / ``eval_data``: any random-access data
  (:func:`lrjax.data.as_source`: a lrjax Dataset, a dict of numpy arrays,
  a TFDS ``data_source``...);
- ``inputs``: which part of a batch the model is called on (a key, or a
  function of the batch returning the model's positional arguments).

Named tasks (an image classifier from the model zoo on a bundled or TFDS
dataset, the byte-level language model) are built by :mod:`lrjax.tasks`;
the trainer imports neither the models nor the dataset loaders.

A task's :meth:`Task.fingerprint` is what a workdir records of what it
trained (model, loss, parameter shapes, a digest of the data), so that a
run resumed with another task is refused, naming what changed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrjax.data._source import as_source, example_batch


class Model(NamedTuple):
  """A model as two pure functions; every adapter produces one.

  Attributes:
    init: ``init(key, *inputs) -> (params, model_state)``: parameters and
      the non-trained state (batch-norm statistics; ``{}`` if none) for
      example inputs (zeros of a batch's shapes).
    apply: ``apply(params, model_state, *inputs, train, rng) ->
      (outputs, new_model_state)``; ``train`` is a Python bool (training
      mode: batch statistics, dropout), ``rng`` a PRNG key (or None) for
      stochastic layers. Outside training mode return ``model_state``
      unchanged.
    name: a name for logs.
    identity: what the model is, for the run's fingerprint: the module's
      qualified class name (NNX, linen), or empty for the qualified names
      of ``init`` and ``apply``.
  """

  init: Callable[..., tuple[Any, Any]]
  apply: Callable[..., tuple[Any, Any]]
  name: str = 'model'
  identity: str = ''


def from_linen(
  module: Any,
  *,
  train_arg: str | None = 'auto',
  rng_streams: tuple[str, ...] = ('dropout',),
) -> Model:
  """A linen module as a :class:`Model`.

  Parameters are the ``'params'`` collection; every other collection
  (``'batch_stats'``...) is the model state, mutable in training mode.

  Args:
    module: the ``flax.linen.Module``.
    train_arg: the keyword argument of ``__call__`` that selects training
      mode (None: none; 'auto': ``train`` if ``__call__`` takes it).
    rng_streams: PRNG streams of stochastic layers; with several, each
      gets ``fold_in(rng, i)``.

  Returns:
    The Model.
  """

  if train_arg == 'auto':
    params = inspect.signature(type(module).__call__).parameters
    train_arg = 'train' if 'train' in params else None

  def kwargs(train: bool) -> dict[str, Any]:
    return {train_arg: train} if train_arg else {}

  def init(key, *inputs):
    variables = dict(module.init(key, *inputs, **kwargs(False)))
    params = variables.pop('params', {})
    return params, variables

  def apply(params, model_state, *inputs, train, rng):
    rngs = None
    if rng is not None and rng_streams:
      if len(rng_streams) == 1:
        rngs = {rng_streams[0]: rng}
      else:
        rngs = {
          s: jax.random.fold_in(rng, i) for i, s in enumerate(rng_streams)
        }
    variables = {'params': params, **model_state}
    if train and jax.tree.leaves(model_state):
      out, updated = module.apply(
        variables,
        *inputs,
        mutable=list(model_state),
        rngs=rngs,
        **kwargs(train),
      )
      return out, {k: updated[k] for k in model_state}
    return module.apply(variables, *inputs, rngs=rngs, **kwargs(train)), (
      model_state
    )

  return Model(init, apply, type(module).__name__, qualified_name(module))


def from_nnx(module: Any) -> Model:
  """A Flax NNX module as a :class:`Model`.

  The module comes initialised, so its parameters are the run's starting
  point (``init`` ignores its key: seed the module's ``nnx.Rngs``).
  ``nnx.Param`` variables are the parameters; every other variable except
  the RNG streams (``nnx.BatchStat``, custom ones) is the model state, kept
  as plain dicts (``nnx.to_pure_dict``) so checkpoints hold arrays only.
  The RNG streams are not state: each step reseeds them
  (``nnx.reseed``) from the trainer's per-step, per-device key, so dropout
  differs across devices and steps and a resumed run draws the same masks.
  Training and evaluation modes are the module's ``train()`` / ``eval()``
  (applied to copies; ``module`` is left as it is).

  Args:
    module: the ``flax.nnx.Module``.

  Returns:
    The Model.
  """
  from flax import nnx

  def split(mode: str):
    copy = nnx.clone(module)
    getattr(copy, mode)()
    return nnx.split(copy, nnx.Param, nnx.RngState, ...)

  graph_train, params0, rng0, rest0 = split('train')
  graph_eval = split('eval')[0]
  is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
  tags = sorted({v.tag for v in jax.tree.leaves(rng0, is_leaf=is_var)})

  def fresh(template, pure=None):
    # New Variables in the current trace (nnx refuses to mutate ones made
    # outside it), filled from a pure dict when one is given.
    state = jax.tree.map(lambda v: v, template)
    if pure is not None:
      nnx.replace_by_pure_dict(state, pure)
    return state

  def init(key, *inputs):
    del key, inputs
    return nnx.to_pure_dict(params0), nnx.to_pure_dict(rest0)

  def apply(params, model_state, *inputs, train, rng):
    graph = graph_train if train else graph_eval
    model = nnx.merge(
      graph, fresh(params0, params), fresh(rng0), fresh(rest0, model_state)
    )
    if rng is not None and tags:
      nnx.reseed(
        model, **{t: jax.random.fold_in(rng, i) for i, t in enumerate(tags)}
      )
    out = model(*inputs)
    if not train:
      return out, model_state
    return out, nnx.to_pure_dict(
      nnx.split(model, nnx.Param, nnx.RngState, ...)[3]
    )

  return Model(init, apply, type(module).__name__, qualified_name(module))


def from_functions(
  init: Callable[..., Any], apply: Callable[..., Any], name: str = 'model'
) -> Model:
  """Plain stateless functions as a :class:`Model`.

  Args:
    init: ``init(key, *inputs) -> params``.
    apply: ``apply(params, *inputs) -> outputs`` (no training mode, no
      state, no randomness).
    name: a name for logs.

  Returns:
    The Model (its state is ``{}``).
  """

  def init_fn(key, *inputs):
    return init(key, *inputs), {}

  def apply_fn(params, model_state, *inputs, train, rng):
    del train, rng
    return apply(params, *inputs), model_state

  return Model(
    init_fn,
    apply_fn,
    name,
    f'{qualified_name(init)} / {qualified_name(apply)}',
  )


def as_model(model: Any) -> Model:
  """A :class:`Model` from a Model, an NNX or linen module or ``(init,
  apply)``.

  Raises:
    TypeError: for anything else (naming what is accepted).
  """
  if isinstance(model, Model):
    return model
  if isinstance(model, tuple) and len(model) == 2 and all(map(callable, model)):
    return from_functions(*model)
  from flax import linen, nnx

  if isinstance(model, nnx.Module):
    return from_nnx(model)
  if isinstance(model, linen.Module):
    return from_linen(model)
  raise TypeError(
    f'model of type {type(model).__name__} is not a model: give a Flax NNX '
    'module, a linen module, a pair (init, apply) of functions or a '
    'lrjax.train.Model'
  )


# Names the step returns or the trainer's records hold beside a task's own.
RESERVED_METRICS = frozenset(
  {
    'loss',
    'finite',
    'skipped',
    'sq_norm_local',
    'sq_norm_global',
    'learning_rate',
    'momentum',
    'weight_decay',
    'step',
    'epoch',
    'examples',
    'lr',
    'batch_size',
    'accum_steps',
    'micro_batch',
    'stage',
    'grad_sq_norm',
    'noise_g',
    'noise_scale',
    'data_wait_sec',
    'examples_per_sec',
    'steps_per_sec',
    'eta_sec',
    'split',
  }
)


LOSS_CONTRACT = 'loss(outputs, batch) -> (mean loss, metrics dict)'
EVAL_CONTRACT = 'eval_metrics(outputs, batch) -> {name: [B] per-example values}'


def _describe(value: Any) -> str:
  """What a user function returned, for an error message."""
  shape = getattr(value, 'shape', None)
  if shape is not None:
    return f'an array of shape {tuple(shape)} ({value.dtype})'
  if isinstance(value, (tuple, list)):
    return f'a {type(value).__name__} of {len(value)}'
  return f'a {type(value).__name__}'


def _checked_loss(task: str, out: Any) -> tuple[Any, Mapping[str, Any]]:
  """``(loss, metrics)`` of what a task's loss returned, checked (while
  tracing: only shapes are read).

  Raises:
    TypeError: for anything but a pair of a loss and a Mapping.
    ValueError: for a loss or a metric that is not a scalar.
  """
  if not (isinstance(out, (tuple, list)) and len(out) == 2):
    raise TypeError(
      f'the loss of task {task!r} returned {_describe(out)}; the contract '
      f'is {LOSS_CONTRACT} (return (loss, {{}}) for no metrics)'
    )
  loss, metrics = out
  if not isinstance(metrics, Mapping):
    raise TypeError(
      f'the loss of task {task!r} returned metrics as {_describe(metrics)}; '
      f'the contract is {LOSS_CONTRACT} (a dict of scalars, {{}} for none)'
    )
  if np.shape(loss) != ():
    raise ValueError(
      f'the loss of task {task!r} returned a loss of shape '
      f'{np.shape(loss)}; the contract is {LOSS_CONTRACT}: the mean over '
      'the batch, a scalar (e.g. jnp.mean of the per-example losses)'
    )
  bad = {k: np.shape(v) for k, v in metrics.items() if np.shape(v) != ()}
  if bad:
    raise ValueError(
      f'the loss of task {task!r} returned metrics that are not scalars '
      f'(shapes {bad}); the contract is {LOSS_CONTRACT}, each metric a '
      'scalar (per-example values belong in eval_metrics)'
    )
  clash = RESERVED_METRICS.intersection(metrics)
  if clash:
    raise ValueError(
      f'the loss of task {task!r} returns metrics {sorted(clash)}, '
      f'names the trainer logs itself ({sorted(RESERVED_METRICS)}); '
      'rename them'
    )
  return loss, metrics


def _checked_eval(task: str, values: Any, size: int) -> Mapping[str, Any]:
  """What a task's ``eval_metrics`` returned for a batch of ``size``,
  checked (while tracing: only shapes are read).

  Raises:
    TypeError: for anything but a Mapping.
    ValueError: for values that are not one per example.
  """
  if not isinstance(values, Mapping):
    raise TypeError(
      f'eval_metrics of task {task!r} returned {_describe(values)}; '
      f'the contract is {EVAL_CONTRACT}'
    )
  bad = {k: np.shape(v) for k, v in values.items() if np.shape(v) != (size,)}
  if bad:
    raise ValueError(
      f'eval_metrics of task {task!r} returned values of shapes {bad} for '
      f'a batch of {size}; the contract is {EVAL_CONTRACT} (one value per '
      'example; a mean belongs in the loss)'
    )
  return values


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """What to train; see the module docstring.

  Attributes:
    model: the model (anything :func:`as_model` takes; stored as a Model).
    loss: ``loss(outputs, batch) -> (loss, metrics)``: the mean loss of the
      batch (a scalar) and a dict of scalar metrics (possibly empty).
    train_data: the training split (anything :func:`lrjax.data.as_source`
      takes; stored as a source).
    eval_data: the evaluation split (None: no evaluation).
    inputs: the model's inputs: a key of the batch, or ``inputs(batch)``
      returning one array or a tuple of positional arguments.
    eval_metrics: ``eval_metrics(outputs, batch) -> {name: [B] values}``
      (None: average ``loss`` and its metrics over evaluation batches).
    name: the task's name (logs, ``config.json``).
    info: facts for logs and experiments (e.g. ``num_classes``).
  """

  model: Any
  loss: Callable[[Any, Mapping[str, Any]], tuple[Any, Mapping[str, Any]]]
  train_data: Any
  eval_data: Any = None
  inputs: str | Callable[[Mapping[str, Any]], Any] = 'image'
  eval_metrics: Callable[..., Mapping[str, Any]] | None = None
  name: str = 'task'
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    object.__setattr__(self, 'model', as_model(self.model))
    object.__setattr__(self, 'train_data', as_source(self.train_data))
    if self.eval_data is not None:
      object.__setattr__(self, 'eval_data', as_source(self.eval_data))
    if not callable(self.loss):
      raise TypeError(f'loss={self.loss!r} must be a function')
    if not (isinstance(self.inputs, str) or callable(self.inputs)):
      raise TypeError(f'inputs={self.inputs!r} must be a batch key or function')
    if self.eval_metrics is not None and not callable(self.eval_metrics):
      raise TypeError(f'eval_metrics={self.eval_metrics!r} must be a function')
    example = example_batch(self.train_data)
    if isinstance(self.inputs, str) and self.inputs not in example:
      raise ValueError(
        f'inputs={self.inputs!r} is not a key of the batches '
        f'{sorted(example)}; name one of them or pass a function'
      )

  @property
  def num_train(self) -> int:
    return int(self.train_data.num_examples)

  @functools.cached_property
  def fingerprint(self) -> dict[str, Any]:
    """What this task is, as a workdir records it (computed once).

    The model's identity (:attr:`Model.identity`), the qualified names of
    ``loss``, ``eval_metrics`` and ``inputs``, the parameter and model-state
    trees (path -> dtype and shape, from ``jax.eval_shape`` of ``init``:
    nothing is computed) and each split's example count and content digest
    (:func:`lrjax.data.fingerprint`). The parameter *values* of an NNX
    module (its seed) are not in it.

    Returns:
      A JSON-ready dict.
    """
    from lrjax.data._fingerprint import fingerprint as data_fingerprint

    params, model_state = jax.eval_shape(self.init, jax.random.PRNGKey(0))
    model = self.model
    return {
      'name': self.name,
      'model': model.identity
      or f'{qualified_name(model.init)} / {qualified_name(model.apply)}',
      'loss': qualified_name(self.loss),
      'eval_metrics': None
      if self.eval_metrics is None
      else qualified_name(self.eval_metrics),
      'inputs': self.inputs
      if isinstance(self.inputs, str)
      else qualified_name(self.inputs),
      'params': tree_shapes(params),
      'model_state': tree_shapes(model_state),
      'train_data': data_fingerprint(self.train_data),
      'eval_data': None
      if self.eval_data is None
      else data_fingerprint(self.eval_data),
    }

  def model_inputs(self, batch: Mapping[str, Any]) -> tuple[Any, ...]:
    """The model's positional arguments for ``batch``."""
    if isinstance(self.inputs, str):
      return (batch[self.inputs],)
    out = self.inputs(batch)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)

  def example(self) -> dict[str, np.ndarray]:
    """One training example as a batch of one (for shapes and dtypes)."""
    return example_batch(self.train_data)

  def init(self, key: jax.Array) -> tuple[Any, Any]:
    """``(params, model_state)`` of the model, built on zero inputs."""
    zeros = {k: np.zeros_like(v) for k, v in self.example().items()}
    return self.model.init(key, *self.model_inputs(zeros))

  def check(self) -> None:
    """Checks what ``loss`` and ``eval_metrics`` return, on two training
    examples, abstractly (``jax.eval_shape``: nothing is computed).

    The trainer calls it before it compiles, so that a loss breaking its
    contract is one error naming the task, what it returned and the
    contract, not an error deep inside a traced step.

    Raises:
      TypeError: when ``loss`` returns anything but ``(loss, metrics
        dict)``, or ``eval_metrics`` anything but a dict.
      ValueError: when the loss or a metric is not a scalar, a metric has
        a name the trainer logs itself, or an evaluation metric is not one
        value per example.
    """
    batch = example_batch(self.train_data, min(2, self.num_train))
    seen: dict[str, Any] = {}

    def abstract(tree):
      return jax.tree.map(
        lambda v: (
          jax.ShapeDtypeStruct(v.shape, v.dtype)
          if isinstance(v, jax.Array)
          else v
        ),
        tree,
      )

    def trace(key, batch):
      params, model_state = self.init(key)
      outputs, _ = self.model.apply(
        params, model_state, *self.model_inputs(batch), train=False, rng=None
      )
      seen['loss'] = abstract(self.loss(outputs, batch))
      if self.eval_metrics is not None:
        seen['eval'] = abstract(self.eval_metrics(outputs, batch))

    jax.eval_shape(trace, jax.random.key(0), batch)
    _checked_loss(self.name, seen['loss'])
    if 'eval' in seen:
      _checked_eval(self.name, seen['eval'], len(next(iter(batch.values()))))

  def train_loss(
    self, params: Any, model_state: Any, batch: Any, rng: jax.Array | None
  ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
    """``(loss, (metrics, new_model_state))`` in training mode.

    Raises:
      TypeError, ValueError: (while tracing) as :meth:`check`.
    """
    outputs, new_state = self.model.apply(
      params, model_state, *self.model_inputs(batch), train=True, rng=rng
    )
    loss, metrics = _checked_loss(self.name, self.loss(outputs, batch))
    metrics = dict(metrics)
    return jnp.asarray(loss, jnp.float32), (metrics, new_state)

  def eval_sums(
    self, params: Any, model_state: Any, batch: Any, mask: jax.Array
  ) -> dict[str, jax.Array]:
    """Sums of the evaluation metrics over the rows where ``mask`` is true,
    and their ``count`` (``eval_metrics`` given).

    Raises:
      TypeError, ValueError: (while tracing) as :meth:`check`.
    """
    outputs, _ = self.model.apply(
      params, model_state, *self.model_inputs(batch), train=False, rng=None
    )
    values = _checked_eval(
      self.name, self.eval_metrics(outputs, batch), mask.shape[0]
    )
    mask = mask.astype(jnp.float32)
    out = {
      k: jnp.sum(jnp.asarray(v, jnp.float32) * mask) for k, v in values.items()
    }
    out['count'] = jnp.sum(mask)
    return out

  def eval_means(
    self, params: Any, model_state: Any, batch: Any
  ) -> dict[str, jax.Array]:
    """``loss`` and its metrics on a whole (unpadded) evaluation batch.

    Raises:
      TypeError, ValueError: (while tracing) as :meth:`train_loss`.
    """
    outputs, _ = self.model.apply(
      params, model_state, *self.model_inputs(batch), train=False, rng=None
    )
    loss, metrics = _checked_loss(self.name, self.loss(outputs, batch))
    return {'loss': jnp.asarray(loss, jnp.float32), **dict(metrics)}


def qualified_name(obj: Any) -> str:
  """``module.qualname`` of a function or class; of its class for any other
  object (a module instance); ``partial(...)`` of a ``functools.partial``.

  Examples:
    >>> qualified_name(qualified_name)
    'lrjax.train._task.qualified_name'
    >>> qualified_name(functools.partial(int, base=2))
    'partial(builtins.int)'
  """
  if isinstance(obj, functools.partial):
    return f'partial({qualified_name(obj.func)})'
  target = obj if hasattr(obj, '__qualname__') else type(obj)
  module = getattr(target, '__module__', None) or '?'
  return f'{module}.{target.__qualname__}'


def tree_shapes(tree: Any) -> dict[str, str]:
  """Path -> ``'dtype (shape)'`` of each leaf of a tree of arrays.

  Examples:
    >>> import numpy as np
    >>> tree_shapes({'dense': {'kernel': np.zeros((2, 3), np.float32)}})
    {"['dense']['kernel']": 'float32 (2, 3)'}
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    jax.tree_util.keystr(path): f'{np.dtype(leaf.dtype).name} '
    f'{tuple(int(d) for d in leaf.shape)}'
    for path, leaf in leaves
  }
