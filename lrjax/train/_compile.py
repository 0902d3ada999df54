"""Ahead-of-time compilation of a step for every micro-batch shape of a plan."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from absl import logging


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
        ``jax.ShapeDtypeStruct`` (with shardings where they matter).
      plan: the accumulation plan.
      **kwargs: ``start_update``, ``background``.
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
