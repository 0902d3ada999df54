"""Ahead-of-time compilation of a step for every micro-batch shape of a plan."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def shard_map_args(
  mesh: Mesh | Sequence[Any],
  state: Any,
  example: Mapping[str, Any],
  *scalars: Any,
  axis_name: str = 'batch',
) -> Callable[[int], tuple[Any, ...]]:
  """The abstract arguments of a ``jit(shard_map(step))`` by micro-batch.

  For a step ``step(state, batch, *scalars)`` mapped with ``in_specs=(P(),
  P(axis_name), P(), ...)``: the state and the scalars replicated, the
  batch sharded on its leading axis, ``micro_batch`` examples per device.
  Pass the result to :meth:`StageCompiler.for_jit` as ``abstract_args``.

  Args:
    mesh: a one-axis mesh, or the devices to build one over (axis
      ``axis_name``).
    state: the step's state (arrays or ``jax.ShapeDtypeStruct``; only
      shapes and dtypes are read).
    example: a batch (dict of arrays with any leading size) whose
      per-example shapes and dtypes the step takes.
    *scalars: example values of the step's further arguments (e.g.
      ``np.float32(0)`` for an epoch); their shapes and dtypes are used.
    axis_name: the mesh axis the batch is sharded over.

  Returns:
    ``abstract_args(micro_batch) -> (state, batch, *scalars)`` as
    ``jax.ShapeDtypeStruct`` with ``NamedSharding``; the batch has
    ``devices * micro_batch`` examples.
  """
  if not isinstance(mesh, Mesh):
    mesh = Mesh(np.array(list(mesh)), (axis_name,))
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P(axis_name))
  devices = mesh.shape[axis_name]

  def spec(a: Any, sharding: NamedSharding, shape=None) -> Any:
    dtype = a.dtype if hasattr(a, 'dtype') else np.asarray(a).dtype
    shape = np.shape(a) if shape is None else shape
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

  abstract_state = jax.tree.map(lambda a: spec(a, replicated), state)
  abstract_scalars = tuple(spec(a, replicated) for a in scalars)

  def abstract_args(micro_batch: int) -> tuple[Any, ...]:
    batch = {
      k: spec(v, sharded, (devices * micro_batch, *np.shape(v)[1:]))
      for k, v in example.items()
    }
    return (abstract_state, batch, *abstract_scalars)

  return abstract_args


class StageCompiler:
  """Compiles a step once per distinct micro-batch shape of a plan.

  A batch ramp changes the shapes a step takes, and each shape is a compiled
  program. The compiler builds the program of the first stage now and, with
  ``background=True``, those of the later stages in a worker thread while
  the earlier stages train, so a stage switch finds its program ready.
  Stages already passed (``start_update``, a resumed run) are not compiled.

  Args:
    compile_fn: ``compile_fn(micro_batch) -> executable`` (e.g.
      ``lambda m: jitted.lower(*abstract_args(m)).compile()``); called once
      per distinct micro-batch.
    plan: the accumulation plan (:func:`lrjax.batch.plan`).
    start_update: the first update the loop runs.
    background: compile the later shapes in a thread (else on first use).

  Attributes:
    compile_seconds: micro-batch -> seconds its compilation took.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from lrjax import batch
    >>> plan = batch.plan(batch.parse('stages(4@1,8@1,n=8)'), 1, 8)
    >>> step = jax.jit(lambda x: x.sum())
    >>> spec = lambda m: (jax.ShapeDtypeStruct((m,), jnp.float32),)
    >>> with StageCompiler.for_jit(step, spec, plan) as compiler:
    ...   for u in batch.updates(plan):
    ...     out = compiler.get(u.micro_batch)(jnp.ones(u.micro_batch))
    ...   print(compiler.num_compiles, float(out))
    2 8.0
  """

  def __init__(
    self,
    compile_fn: Callable[[int], Any],
    plan: Any,
    *,
    start_update: int = 0,
    background: bool = True,
  ) -> None:
    self._compile_fn = compile_fn
    self.compile_seconds: dict[int, float] = {}
    schedule = plan.batch_schedule
    start_update = min(start_update, max(schedule.num_updates - 1, 0))
    stage = max(
      i for i, b in enumerate(schedule.boundaries) if b <= start_update
    )
    ahead = list(dict.fromkeys(s.micro_batch for s in plan.stages[stage:]))
    self._ready: dict[int, Any] = {}
    self._futures: dict[int, concurrent.futures.Future[Any]] = {}
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    self._ready[ahead[0]] = self._compile(ahead[0])
    for m in ahead[1:]:
      if background:
        self._futures[m] = self._pool.submit(self._compile, m)

  @classmethod
  def for_jit(
    cls,
    fn: Any,
    abstract_args: Callable[[int], tuple[Any, ...]],
    plan: Any,
    **kwargs: Any,
  ) -> StageCompiler:
    """A compiler of a ``jax.jit`` (or ``jax.pmap``) function.

    Args:
      fn: the jitted function.
      abstract_args: ``abstract_args(micro_batch)``: its arguments as
        ``jax.ShapeDtypeStruct`` (with shardings where they matter; for a
        ``jit(shard_map(...))`` step :func:`shard_map_args` builds them).
      plan: the accumulation plan.
      **kwargs: ``start_update``, ``background``.

    Examples:
      A data-parallel step under ``jit(shard_map)`` on every device:

      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      >>> from lrjax import batch
      >>> mesh = Mesh(np.array(jax.devices()), ('batch',))
      >>> def body(w, b, lr):  # one SGD step on a mean squared error
      ...   g = jax.grad(lambda w: jnp.mean((b['x'] @ w - b['y']) ** 2))(w)
      ...   return w - lr * jax.lax.pmean(g, 'batch')
      >>> step = jax.jit(jax.shard_map(
      ...   body, mesh=mesh, in_specs=(P(), P('batch'), P()), out_specs=P(),
      ...   check_vma=False))
      >>> w = jnp.zeros(3)
      >>> example = {'x': np.zeros((1, 3), np.float32), 'y': np.zeros(1)}
      >>> args = shard_map_args(mesh, w, example, np.float32(0.1))
      >>> n = 8 * mesh.size
      >>> plan = batch.plan(batch.parse(f'stages({n // 2}@1,{n}@1,n={n})'),
      ...                   mesh.size, 8)
      >>> args(4)[1]['x'].shape == (4 * mesh.size, 3)
      True
      >>> with StageCompiler.for_jit(step, args, plan) as compiler:
      ...   compiled = [compiler.get(m) for m in (4, 8)]
      ...   print(compiler.num_compiles)
      2
    """
    return cls(lambda m: fn.lower(*abstract_args(m)).compile(), plan, **kwargs)

  def _compile(self, micro: int) -> Any:
    start = time.perf_counter()
    executable = self._compile_fn(micro)
    self.compile_seconds[micro] = time.perf_counter() - start
    logging.info(
      'Compiled the step for micro-batch %d in %.2f s',
      micro,
      self.compile_seconds[micro],
    )
    return executable

  def prefetch(self, micro_batches: Any) -> None:
    """Compiles these micro-batch shapes in the background (those not
    compiled or queued yet): shapes a hook's batch schedule may use."""
    for m in dict.fromkeys(micro_batches):
      if m not in self._ready and m not in self._futures:
        self._futures[m] = self._pool.submit(self._compile, m)

  @property
  def num_compiles(self) -> int:
    """Shapes compiled so far."""
    return len(self.compile_seconds)

  def get(self, micro_batch: int) -> Any:
    """The executable for ``micro_batch``: ready, awaited from the
    background, or compiled now (a shape outside the plan's stages ahead)."""
    executable = self._ready.get(micro_batch)
    if executable is not None:
      return executable
    future = self._futures.pop(micro_batch, None)
    if future is not None:
      executable = future.result()
    else:
      executable = self._compile(micro_batch)
    self._ready[micro_batch] = executable
    return executable

  def close(self) -> None:
    """Stops the background compilations not started yet."""
    self._pool.shutdown(wait=False, cancel_futures=True)

  def __enter__(self) -> StageCompiler:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
