"""Running the per-device step under ``jax.pmap`` or ``jit(shard_map)``.

Both runners keep the train state on the devices in their own layout for the
whole run (pmap: a leading device axis; shard_map: replicated global arrays),
so the loop never replicates or unreplicates; only checkpoints and
evaluations read one replica back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lrjax.train._step import AXIS


class Runner:
  """Places state and batches and compiles the step for one parallel mode.

  Args:
    body: per-device ``body(state, batch, epoch, monitor) -> (state,
      metrics)`` with collectives over ``'batch'`` (with ``num_inside``:
      ``body(state, batch, epoch, monitor, due) -> (state, metrics,
      values)``).
    devices: the global devices to run on, ordered by process (this
      process' devices are a contiguous block).
    mode: 'pmap' or 'shard_map'.
    example: a batch (dict of arrays, any leading size) whose per-example
      shapes and dtypes the compiled steps take.
    num_inside: hooks the body computes inside the step
      (``make_train_body(..., inside=...)``): the step then takes their
      ``due`` flags (int32[num_inside]) after ``monitor`` and returns their
      values (replicated) after the metrics.
    compiler_options: XLA options of every compiled step
      (``TrainConfig.compiler_options``).
  """

  def __init__(
    self,
    body: Callable[..., Any],
    devices: list[Any],
    mode: str,
    example: Mapping[str, Any],
    num_inside: int = 0,
    compiler_options: Mapping[str, Any] | None = None,
  ) -> None:
    if mode not in ('pmap', 'shard_map'):
      raise ValueError(f'parallel={mode!r} must be pmap or shard_map')
    if mode == 'pmap' and jax.process_count() > 1:
      # Multi-process pmap wants host-local inputs with every argument
      # mapped; the same body under jit(shard_map) takes global arrays.
      logging.warning(
        'parallel=pmap with %d processes runs as shard_map (same body)',
        jax.process_count(),
      )
      mode = 'shard_map'
    self.mode = mode
    self.devices = list(devices)
    self.num_devices = len(self.devices)
    self.local_devices = [
      d for d in self.devices if d.process_index == jax.process_index()
    ]
    self.mesh = Mesh(np.array(self.devices), (AXIS,))
    self.sharded = NamedSharding(self.mesh, P(AXIS))
    self.replicated = NamedSharding(self.mesh, P())
    self.metric_keys: tuple[str, ...] = ()
    self.example_spec = {
      k: (tuple(np.shape(v)[1:]), np.asarray(v).dtype)
      for k, v in example.items()
    }
    self._host_memory = all(d.platform == 'cpu' for d in self.devices)
    self.num_inside = num_inside
    self.compiler_options = dict(compiler_options) if compiler_options else None
    self._flags: dict[tuple[int, ...], Any] = {}

    def packed(state, batch, epoch, monitor, *due):
      # One float32 vector instead of a dict of scalars: one transfer per
      # step instead of one per metric.
      state, metrics, *values = body(state, batch, epoch, monitor, *due)
      self.metric_keys = tuple(sorted(metrics))
      vec = jnp.stack(
        [jnp.asarray(metrics[k], jnp.float32) for k in self.metric_keys]
      )
      return (state, vec, *values)

    extra = 1 if num_inside else 0
    if mode == 'pmap':
      self._fn = jax.pmap(
        packed,
        axis_name=AXIS,
        in_axes=(0, 0, None, None) + (None,) * extra,
        devices=self.devices,
        donate_argnums=(0,),
      )
    else:
      mapped = jax.shard_map(
        packed,
        mesh=self.mesh,
        in_specs=(P(), P(AXIS), P(), P()) + (P(),) * extra,
        out_specs=(P(), P()) + (P(),) * extra,
        check_vma=False,
      )
      self._fn = jax.jit(mapped, donate_argnums=(0,))

  # State placement --------------------------------------------------------

  def put_state(self, host_state: Any) -> Any:
    """Places a host (numpy) state on the devices, replicated."""
    if self.mode == 'pmap':
      n = self.num_devices
      local = len(self.local_devices)

      def put(a):
        a = np.asarray(a)
        stacked = np.broadcast_to(a, (local, *a.shape))
        return jax.make_array_from_process_local_data(
          self.sharded, np.ascontiguousarray(stacked), (n, *a.shape)
        )

      return jax.tree.map(put, host_state)

    def put_rep(a):
      a = np.array(a)
      return jax.make_array_from_process_local_data(self.replicated, a, a.shape)

    return jax.tree.map(put_rep, host_state)

  def get_state(self, state: Any) -> Any:
    """One replica of the device state as numpy arrays (a copy)."""
    return jax.tree.map(lambda a: np.array(self.replica(a)), state)

  def replica(self, a: jax.Array) -> jax.Array:
    """This process' first replica of a device array (no host transfer)."""
    shard = a.addressable_data(0)
    return shard[0] if self.mode == 'pmap' else shard

  def metrics(self, vec: jax.Array) -> dict[str, Any]:
    """A step's metrics (identical on every device) as host scalars."""
    return self.metrics_many([vec])[0]

  def metrics_many(self, vecs: list[jax.Array]) -> list[dict[str, Any]]:
    """Metrics of several steps with one device-to-host fetch."""
    # One replica's row per step (pmap: [1, k]; shard_map: [k]).
    rows = [v.addressable_data(0) if self.num_devices > 1 else v for v in vecs]
    if self._host_memory:
      # CPU arrays already live in host memory: np.asarray reads them about
      # 10x faster per array than jax.device_get's asynchronous copies.
      rows = [np.asarray(r) for r in rows]
    else:
      rows = jax.device_get(rows)
    keys = self.metric_keys
    out = []
    for row in np.stack(rows).reshape(len(rows), -1).tolist():
      m: dict[str, Any] = dict(zip(keys, row, strict=True))
      m['finite'] = bool(m['finite'])
      m['skipped'] = int(m['skipped'])
      out.append(m)
    return out

  def due_flags(self, due: tuple[int, ...]) -> Any:
    """The step's ``due`` argument for the inside hooks' flags (cached)."""
    flags = self._flags.get(due)
    if flags is None:
      flags = np.asarray(due, np.int32)
      if self.num_devices > 1:
        flags = jax.device_put(flags, self.replicated)
      self._flags[due] = flags
    return flags

  # Batches ----------------------------------------------------------------

  def put_batch(
    self, local_batch: Mapping[str, np.ndarray], epoch: float = 0.0
  ) -> tuple[Any, Any]:
    """Places this process' slice of a global micro-batch on its devices.

    Args:
      local_batch: arrays [local_devices * micro, ...] in device order.
      epoch: the epoch of the update (passed to the step as ``epoch``).

    Returns:
      ``(batch, epoch, monitor)``, the step's arguments after the state:
      global device arrays ([devices, micro, ...] for pmap, [devices *
      micro, ...] for shard_map), the epoch scalar and a NaN ``monitor``
      (the loop passes there what a hook's ``step_input`` feeds, when one
      does).
    """
    local = len(self.local_devices)
    epoch, monitor = np.float32(epoch), np.float32('nan')
    if jax.process_count() == 1:
      host = {}
      for k, v in local_batch.items():
        v = np.asarray(v)
        if self.mode == 'pmap':
          v = v.reshape(local, v.shape[0] // local, *v.shape[1:])
        host[k] = v
      if self.num_devices == 1:
        # The executable's own host-to-device copy is the cheapest path.
        return host, epoch, monitor
      shardings = {k: self.sharded for k in host}
      return jax.device_put(
        (host, epoch, monitor), (shardings, self.replicated, self.replicated)
      )
    out = {}
    for k, v in local_batch.items():
      v = np.asarray(v)
      micro = v.shape[0] // local
      if self.mode == 'pmap':
        v = v.reshape(local, micro, *v.shape[1:])
        shape = (self.num_devices, micro, *v.shape[2:])
      else:
        shape = (self.num_devices * micro, *v.shape[1:])
      out[k] = jax.make_array_from_process_local_data(self.sharded, v, shape)
    return out, epoch, monitor

  def batch_spec(self, micro: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Abstract global micro-batch of ``micro`` examples per device."""
    n = self.num_devices
    lead = (n, micro) if self.mode == 'pmap' else (n * micro,)
    return {
      k: jax.ShapeDtypeStruct((*lead, *shape), dtype, sharding=self.sharded)
      for k, (shape, dtype) in self.example_spec.items()
    }

  # Compilation ------------------------------------------------------------

  def compile(self, state: Any, micro: int) -> Callable[..., Any]:
    """Compiles the step for ``micro`` examples per device (ahead of time).

    Args:
      state: the device state (only shapes and shardings are read).
      micro: per-device micro-batch size.

    Returns:
      The compiled step ``(state, batch, epoch, monitor) -> (state,
      metrics)`` (with inside hooks ``(state, batch, epoch, monitor, due)
      -> (state, metrics, values)``).
    """
    abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
      state,
    )
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=self.replicated)
    due = ()
    if self.num_inside:
      due = (
        jax.ShapeDtypeStruct(
          (self.num_inside,), jnp.int32, sharding=self.replicated
        ),
      )
    return self._fn.lower(
      abstract, self.batch_spec(micro), scalar, scalar, *due
    ).compile(self.compiler_options)
