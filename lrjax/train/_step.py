"""The per-device train step, the optimizer, and the train state.

The step is written once for one device with collectives over the axis
``'batch'``; ``lrjax.train._parallel`` runs it under ``jax.pmap`` or
``jax.jit(jax.shard_map(...))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

AXIS = 'batch'


class TrainState(NamedTuple):
  """Everything on the device that a step reads and writes.

  Attributes:
    step: micro-steps done (one per compiled step call; equals real updates
      when there is no accumulation).
    params: model parameters.
    model_state: the model's non-trained state (batch-norm running
      statistics; an empty dict when it has none).
    opt_state: optimizer state (MultiSteps and skip wrappers included).
    skipped: non-finite micro-steps skipped so far (``nan_policy='skip'``).
    rng: PRNG key data (uint32[2]) for stochastic layers; per step and
      device a key is folded from it.
  """

  step: Any
  params: Any
  model_state: Any
  opt_state: Any
  skipped: Any
  rng: Any


def _is_stateful(policy: Any) -> bool:
  return hasattr(policy, 'init') and hasattr(policy, 'update')


def make_optimizer(
  name: Any,
  *,
  learning_rate: Any,
  momentum: Any,
  weight_decay: Any,
  b2: float = 0.999,
  clip_norm: float | None = None,
  every_k_schedule: Callable[[Any], Any] | int | None = None,
  skip_non_finite: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Builds the optax optimizer with injected (observable) hyperparameters.

  ``learning_rate``, ``momentum`` and ``weight_decay`` may be floats, optax
  schedules of the real update count, or optax stateful schedules (plateau
  policies); all are injected with ``optax.inject_hyperparams`` so
  their values in force are in the optimizer state. ``momentum`` is ``b1``
  for the Adam family. Weight decay is L2 added to the gradient for
  'sgd', 'nesterov' and 'adam'; decoupled (added to the update) for
  'adamw' and 'lamb'; 'lars' adds it to the gradient before the layer-wise
  trust ratio, as ``optax.lars`` does.

  Any optax optimizer is a factory of the learning rate, e.g.
  ``lambda learning_rate: optax.adamw(learning_rate, b2=0.95)``; it gets
  ``momentum`` / ``weight_decay`` by keyword only when it has parameters
  of those names.

  Args:
    name: 'sgd', 'nesterov', 'adam', 'adamw', 'lamb' or 'lars', or a factory
      ``learning_rate -> optax.GradientTransformation``.
    learning_rate: float, schedule or stateful schedule.
    momentum: float, schedule or stateful schedule.
    weight_decay: float, schedule or stateful schedule (0.0 = none).
    b2: second-moment decay of the Adam family.
    clip_norm: clip gradients to this global norm first
      (``optax.clip_by_global_norm``; None = no clipping).
    every_k_schedule: accumulation steps per real update (int or schedule
      of the real update count); None or 1 = no ``optax.MultiSteps``.
    skip_non_finite: skip updates whose gradients are not finite
      (``optax.skip_not_finite`` under MultiSteps, else
      ``optax.apply_if_finite``).

  Returns:
    The optimizer; its ``update`` takes extra args ``value`` and ``epoch``.

  Raises:
    ValueError: for an unknown ``name``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> tx = make_optimizer(
    ...     lambda learning_rate: optax.adamw(learning_rate, b2=0.95),
    ...     learning_rate=optax.linear_schedule(1.0, 0.5, 10),
    ...     momentum=0.9, weight_decay=0.0, clip_norm=1.0)
    >>> state = tx.init({'w': jnp.zeros(3)})
    >>> float(hyperparams(state)['learning_rate'])
    1.0
  """
  if callable(name):
    takes = set(inspect.signature(name).parameters)
    base = _user_factory(name, takes)
    use_momentum = 'momentum' in takes
    use_wd = 'weight_decay' in takes
  elif name in ('sgd', 'nesterov', 'adam', 'adamw', 'lamb', 'lars'):
    base = _named_factory(name, b2)
    use_momentum = True
    use_wd = _is_stateful(weight_decay) or callable(weight_decay)
    use_wd = use_wd or float(weight_decay) != 0.0
  else:
    raise ValueError(
      f'optimizer={name!r} is unknown; use sgd, nesterov, adam, adamw, '
      'lamb or lars, or a factory learning_rate -> optax optimizer'
    )

  def factory(learning_rate, **kw):
    tx = base(learning_rate, kw.get('momentum'), kw.get('weight_decay', 0.0))
    if clip_norm is None:
      return tx
    return optax.chain(optax.clip_by_global_norm(clip_norm), tx)

  # inject_hyperparams reads the hyperparameters' names off the signature.
  if use_momentum and use_wd:

    def injected(learning_rate, momentum, weight_decay):
      return factory(
        learning_rate, momentum=momentum, weight_decay=weight_decay
      )

    kwargs = dict(momentum=momentum, weight_decay=weight_decay)
  elif use_momentum:

    def injected(learning_rate, momentum):
      return factory(learning_rate, momentum=momentum)

    kwargs = dict(momentum=momentum)
  elif use_wd:

    def injected(learning_rate, weight_decay):
      return factory(learning_rate, weight_decay=weight_decay)

    kwargs = dict(weight_decay=weight_decay)
  else:

    def injected(learning_rate):
      return factory(learning_rate)

    kwargs = {}
  tx = optax.inject_hyperparams(injected)(learning_rate=learning_rate, **kwargs)
  accumulate = every_k_schedule is not None and not (
    isinstance(every_k_schedule, int) and every_k_schedule == 1
  )
  if accumulate:
    return optax.MultiSteps(
      tx,
      every_k_schedule=every_k_schedule,
      should_skip_update_fn=optax.skip_not_finite if skip_non_finite else None,
    ).gradient_transformation()
  if skip_non_finite:
    # Never give up: a skipped update is counted, not applied.
    return optax.apply_if_finite(tx, max_consecutive_errors=2**30)
  return tx


def _named_factory(name: str, b2: float) -> Callable[..., Any]:
  """``(learning_rate, momentum, weight_decay) -> optax optimizer``."""

  def factory(learning_rate, momentum, weight_decay):
    use_wd = not (isinstance(weight_decay, float) and weight_decay == 0.0)
    if name in ('sgd', 'nesterov'):
      sgd = optax.sgd(
        learning_rate, momentum=momentum, nesterov=name == 'nesterov'
      )
      if use_wd:
        return optax.chain(optax.add_decayed_weights(weight_decay), sgd)
      return sgd
    if name == 'adam':
      adam = optax.adam(learning_rate, b1=momentum, b2=b2)
      if use_wd:
        return optax.chain(optax.add_decayed_weights(weight_decay), adam)
      return adam
    if name == 'adamw':
      return optax.adamw(
        learning_rate, b1=momentum, b2=b2, weight_decay=weight_decay
      )
    if name == 'lamb':
      return optax.lamb(
        learning_rate, b1=momentum, b2=b2, weight_decay=weight_decay
      )
    return optax.lars(
      learning_rate, weight_decay=weight_decay, momentum=momentum
    )

  return factory


def _user_factory(
  fn: Callable[..., Any], takes: set[str]
) -> Callable[..., Any]:
  """A user's ``learning_rate -> optimizer`` as ``(lr, momentum, wd)``;
  ``takes`` are its parameters' names."""

  def factory(learning_rate, momentum, weight_decay):
    kw = {}
    if 'momentum' in takes:
      kw['momentum'] = momentum
    if 'weight_decay' in takes:
      kw['weight_decay'] = weight_decay
    tx = fn(learning_rate, **kw)
    if not isinstance(tx, optax.GradientTransformation):
      raise TypeError(
        f'the optimizer factory returned {type(tx).__name__}, not an '
        'optax.GradientTransformation (e.g. optax.adamw(learning_rate))'
      )
    return tx

  return factory


def hyperparams(opt_state: Any) -> Mapping[str, jax.Array]:
  """The injected hyperparameters in force, through any wrapper states.

  Args:
    opt_state: state of an optimizer from :func:`make_optimizer`.

  Returns:
    Dict name -> scalar (learning_rate, momentum, weight_decay when used).

  Raises:
    ValueError: if no injected hyperparameters are found.
  """
  state = opt_state
  for _ in range(8):
    if hasattr(state, 'hyperparams'):
      return state.hyperparams
    if hasattr(state, 'inner_opt_state'):
      state = state.inner_opt_state
    elif hasattr(state, 'inner_state'):
      state = state.inner_state
    else:
      break
  raise ValueError('the optimizer state holds no injected hyperparameters')


def create_train_state(
  task: Any, tx: optax.GradientTransformation, seed: int
) -> TrainState:
  """Initialises parameters, model state and optimizer state (host).

  Args:
    task: a :class:`lrjax.train.Task` (its model is initialised on zero
      inputs of a training batch's shapes).
    tx: the optimizer.
    seed: parameter seed (NNX modules come initialised: it only seeds the
      per-step RNG then).

  Returns:
    A TrainState of numpy arrays (nothing placed on devices yet).
  """
  key = jax.random.PRNGKey(seed)
  init_key, rng = jax.random.split(key)
  params, model_state = jax.jit(task.init)(init_key)
  opt_state = tx.init(params)
  state = TrainState(
    step=jnp.zeros([], jnp.int32),
    params=params,
    model_state=model_state,
    opt_state=opt_state,
    skipped=jnp.zeros([], jnp.int32),
    rng=jax.random.key_data(rng) if _is_typed_key(rng) else rng,
  )
  # A fresh numpy copy: no device buffer can be shared with (and deleted by)
  # a donated replica later.
  return jax.tree.map(lambda a: np.array(a), state)


def _is_typed_key(key: Any) -> bool:
  return jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key)


def _sq_norm(tree: Any) -> jax.Array:
  return sum(
    jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)
  )


def _pmean_inexact(tree: Any, pack: bool = False) -> Any:
  """pmean over ``'batch'`` of the inexact (floating or complex) leaves;
  other leaves (counters, equal on every device) stay as they are.

  With ``pack`` the inexact leaves of each dtype travel as one flat vector:
  one all-reduce per dtype. XLA combines the leaves' all-reduces into one
  tuple all-reduce either way, but JAX's CPU collectives between processes
  (gloo) reduce a tuple one operand at a time, a round trip per leaf: 53 ms
  for the LM's 28 gradient leaves (0.83 M floats) against 5 ms packed,
  concatenation included, with two processes on a 2-core host
  (benchmarks/bench_collectives.py). Each element is averaged alone either
  way; a runtime may sum the devices in another order for one long vector,
  so values agree to round-off.
  """
  leaves, treedef = jax.tree.flatten(tree)
  dtypes = [jnp.asarray(x).dtype for x in leaves]
  means = [i for i, d in enumerate(dtypes) if jnp.issubdtype(d, jnp.inexact)]
  if not pack:
    averaged = jax.lax.pmean([leaves[i] for i in means], AXIS)
    for i, x in zip(means, averaged, strict=True):
      leaves[i] = x
    return jax.tree.unflatten(treedef, leaves)
  by_dtype: dict[Any, list[int]] = {}
  for i in means:
    by_dtype.setdefault(dtypes[i], []).append(i)
  for group in by_dtype.values():
    parts = [jnp.ravel(leaves[i]) for i in group]
    flat = jax.lax.pmean(jnp.concatenate(parts), AXIS)
    start = 0
    for i, part in zip(group, parts, strict=True):
      shape = jnp.shape(leaves[i])
      leaves[i] = flat[start : start + part.size].reshape(shape)
      start += part.size
  return jax.tree.unflatten(treedef, leaves)


LossFn = Callable[..., tuple[jax.Array, tuple[Mapping[str, Any], Any]]]


def make_train_body(
  loss_fn: LossFn,
  tx: optax.GradientTransformationExtraArgs,
  *,
  skip_non_finite: bool = False,
  plateau_metric: str = 'loss',
  inside: Sequence[Callable[..., Any]] = (),
  pack_collectives: bool = False,
) -> Callable[..., Any]:
  """The per-device step: ``body(state, batch, epoch, monitor) -> (state,
  metrics)``; with ``inside`` hooks ``body(state, batch, epoch, monitor,
  due) -> (state, metrics, values)``.

  Per device: loss and gradients on the local micro-batch, stateful layers
  (batch norm) with per-device statistics (ghost batch norm), the local
  squared gradient norm; then ``lax.pmean`` over ``'batch'`` of gradients,
  loss, metrics and floating model state, the global squared norm and the
  optimizer update with extra args ``value`` (the metric plateau policies
  monitor) and ``epoch``.

  .. math::
     g = \\frac{1}{D}\\sum_d g_d, \\quad
     |g_{small}|^2 = \\frac{1}{D}\\sum_d |g_d|^2, \\quad
     |g_{big}|^2 = |g|^2

  Args:
    loss_fn: ``loss_fn(params, model_state, batch, rng) -> (loss,
      (metrics, new_model_state))``, e.g. ``Task.train_loss``; ``rng`` is a
      key folded from the state's RNG, the step and the device index.
    tx: optimizer from :func:`make_optimizer`.
    skip_non_finite: keep the old model state and count the step in
      ``skipped`` when the loss or gradient is not finite.
    plateau_metric: what ``value`` holds: 'loss' (the update's training
      loss), the name of one of the loss's metrics, or 'test_<name>' (the
      host's ``monitor`` argument, which a hook's ``step_input`` feeds:
      the trainer's PlateauMonitor feeds the latest evaluation of
      ``<name>``, NaN before the first).
    inside: hooks' ``inside_step(params, grads, batch, ctx)`` functions
      (:class:`lrjax.train.Hook`); the i-th runs when ``due[i]`` is
      non-zero (under ``lax.cond``: nothing is computed otherwise) on this
      device's gradients and micro-batch (``ctx.step_input`` is
      ``monitor``), and its floating leaves are averaged over the devices;
      elsewhere its value is zeros.
    pack_collectives: average across devices as one flat vector per dtype
      instead of a tuple of leaves: the same values up to round-off, and
      one all-reduce instead of one per leaf where the collectives are
      gloo's (the CPU backend across processes). The trainer sets it
      there.

  Returns:
    The body, to be mapped over devices with axis name ``'batch'``. Its
    metrics (identical on every device): loss, the loss's own metrics,
    sq_norm_local, sq_norm_global, finite, skipped and the injected
    hyperparameters; its values: one pytree per ``inside`` function.
  """

  def body(state: TrainState, batch, epoch, monitor, due=None):
    key = jax.random.fold_in(
      jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step),
      jax.lax.axis_index(AXIS),
    )

    def loss_of(params):
      return loss_fn(params, state.model_state, batch, key)

    (loss, (task_metrics, new_model_state)), grads = jax.value_and_grad(
      loss_of, has_aux=True
    )(state.params)
    values = _inside_values(
      inside,
      pack_collectives,
      due,
      state.params,
      grads,
      batch,
      state.model_state,
      key,
      loss_fn,
      monitor,
    )
    task_metrics = {
      k: jnp.asarray(v, jnp.float32) for k, v in task_metrics.items()
    }
    if jax.lax.axis_size(AXIS) == 1:
      # One device: every pmean is the identity, and the local and global
      # norms are one number. Leaving the (trivial) all-reduces in made the
      # CPU runtime run the step synchronously in the call, about 50 us a
      # step slower on a small model (benchmarks/bench_trainer.py).
      sq_local = sq_global = _sq_norm(grads)
    else:
      sq_local, grads, loss, task_metrics, new_model_state = _pmean_inexact(
        (_sq_norm(grads), grads, loss, task_metrics, new_model_state),
        pack_collectives,
      )
      sq_global = _sq_norm(grads)
    if plateau_metric == 'loss':
      value = loss
    elif plateau_metric.startswith('test_'):
      value = jnp.asarray(monitor, jnp.float32)
    elif plateau_metric in task_metrics:
      value = task_metrics[plateau_metric]
    else:
      raise ValueError(
        f'plateau_metric={plateau_metric!r} is not a metric of the loss '
        f"({sorted(task_metrics)}); use 'loss', one of them, or "
        "'test_<name>' for an evaluation metric"
      )
    updates, opt_state = tx.update(
      grads,
      state.opt_state,
      state.params,
      value=value,
      epoch=jnp.asarray(epoch, jnp.float32),
    )
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(sq_global)
    skipped = state.skipped
    if skip_non_finite:
      new_model_state = jax.tree.map(
        lambda n, o: jnp.where(finite, n, o),
        new_model_state,
        state.model_state,
      )
      skipped = skipped + (~finite).astype(jnp.int32)
    new_state = TrainState(
      step=state.step + 1,
      params=params,
      model_state=new_model_state,
      opt_state=opt_state,
      skipped=skipped,
      rng=state.rng,
    )
    metrics = {
      **task_metrics,
      'loss': loss,
      'sq_norm_local': sq_local,
      'sq_norm_global': sq_global,
      'finite': finite,
      'skipped': skipped,
    }
    for name, value in hyperparams(opt_state).items():
      metrics[name] = jnp.asarray(value, jnp.float32)
    if inside:
      return new_state, metrics, values
    return new_state, metrics

  return body


def _inside_values(
  inside, pack, due, params, grads, batch, model_state, key, loss_fn, monitor
):
  """The hooks' inside-step values, each computed only where it is due."""
  if not inside:
    return ()
  n = jax.lax.axis_size(AXIS)

  def mean(tree):
    return tree if n == 1 else _pmean_inexact(tree, pack)

  def grad_fn(p, b):
    return jax.grad(lambda q: loss_fn(q, model_state, b, key)[0])(p)

  from lrjax.train._hooks import InsideContext

  ctx = InsideContext(
    grad_fn=grad_fn,
    mean=mean,
    num_devices=n,
    step_input=jnp.asarray(monitor, jnp.float32),
  )
  values = []
  for i, fn in enumerate(inside):

    def run(fn=fn):
      return mean(fn(params, grads, batch, ctx))

    shape = jax.eval_shape(run)
    values.append(
      jax.lax.cond(
        due[i] > 0,
        run,
        lambda shape=shape: jax.tree.map(
          lambda s: jnp.zeros(s.shape, s.dtype), shape
        ),
      )
    )
  return tuple(values)
