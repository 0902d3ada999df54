"""Per-process slices of global batches and their device layouts."""

import numpy as np


def process_slice(
  indices, process_index: int, process_count: int
) -> np.ndarray:
  """This process's contiguous share of a global batch.

  The global batch of ``n`` examples is cut into ``process_count``
  contiguous, equal slices; process ``p`` gets
  ``indices[p * n // P : (p + 1) * n // P]``. The slices are disjoint and
  cover the batch, in process order, which is the order
  `jax.make_array_from_process_local_data` assembles them in.

  Args:
    indices: the global batch (any array with a leading batch axis).
    process_index: this process, ``jax.process_index()``.
    process_count: the number of processes, ``jax.process_count()``.

  Returns:
    ``indices[start:stop]`` for this process.

  Raises:
    ValueError: if the batch does not divide evenly among the processes or
      the process index is out of range.

  Examples:
    >>> print(process_slice(np.arange(8), 1, 4).tolist())
    [2, 3]
  """
  n = len(indices)
  if int(process_count) < 1:
    raise ValueError(f'{process_count=} must be >= 1')
  if not 0 <= int(process_index) < int(process_count):
    raise ValueError(
      f'{process_index=} must be in [0, {process_count=}): pass '
      'jax.process_index() and jax.process_count()'
    )
  if n % int(process_count):
    raise ValueError(
      f'a global batch of {n} examples does not divide among '
      f'{process_count=} processes: use batch sizes that are multiples of '
      f'the process count {process_count} (and of the device count), or run '
      'with a process count that divides every batch size'
    )
  per = n // int(process_count)
  return indices[int(process_index) * per : (int(process_index) + 1) * per]


def to_pmap_layout(batch, num_devices: int):
  """Reshapes a process-local batch to ``[num_devices, per_device, ...]``.

  Args:
    batch: a pytree of arrays with a leading batch axis (e.g. a `take`
      result).
    num_devices: the local device count, ``jax.local_device_count()``.

  Returns:
    The same pytree with each leaf reshaped for `jax.pmap`.

  Raises:
    ValueError: if the batch does not divide among the devices.

  Examples:
    >>> out = to_pmap_layout({'label': np.arange(6)}, 3)
    >>> print(out['label'].shape)
    (3, 2)
  """
  import jax

  def reshape(x):
    x = np.asarray(x)
    if x.shape[0] % int(num_devices):
      raise ValueError(
        f'a process-local batch of {x.shape[0]} does not divide among '
        f'{num_devices=} devices: use batch sizes that are multiples of the '
        'total device count'
      )
    return x.reshape(int(num_devices), -1, *x.shape[1:])

  return jax.tree.map(reshape, batch)


def to_global_array(batch, mesh, axis_name: str = 'batch'):
  """Builds global `jax.Array`s from process-local shards on a 1-D mesh.

  Every process passes its own `process_slice` of the global batch; the
  result is sharded along the leading axis over ``mesh``'s ``axis_name``
  (``NamedSharding(mesh, P(axis_name))``), the layout `jax.shard_map` and a
  jitted step with ``in_specs=P(axis_name)`` expect.

  Args:
    batch: a pytree of process-local arrays with a leading batch axis.
    mesh: a `jax.sharding.Mesh` over all devices (e.g.
      ``jax.make_mesh((jax.device_count(),), ('batch',))``).
    axis_name: the mesh axis the batch is split over.

  Returns:
    The pytree of global arrays with leading size
    ``local size * process_count``.

  Raises:
    ValueError: if the local batch does not divide among the local devices.
  """
  import jax
  from jax.sharding import NamedSharding, PartitionSpec

  sharding = NamedSharding(mesh, PartitionSpec(axis_name))
  local_devices = len(
    [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  )

  def put(x):
    x = np.asarray(x)
    if x.shape[0] % local_devices:
      raise ValueError(
        f'a process-local batch of {x.shape[0]} does not divide among '
        f'{local_devices} local devices: use batch sizes that are multiples '
        'of the total device count'
      )
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, batch)
