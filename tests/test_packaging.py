"""Packaging: the PEP 561 marker, return types, and no global matplotlib state."""

import inspect
import os
import pathlib
import subprocess
import sys
import textwrap

import lrjax
from lrjax import batch, plots, schedules

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_py_typed_marker_is_shipped():
  assert (pathlib.Path(lrjax.__file__).parent / 'py.typed').is_file()
  # Read as text: tomllib is Python >= 3.11 and lrjax supports 3.10.
  text = (ROOT / 'pyproject.toml').read_text()
  section = text.split('[tool.setuptools.package-data]', 1)[1]
  section = section.split('\n[', 1)[0]
  assert 'lrjax = ["py.typed"]' in section


def _public_callables(module):
  for name in module.__all__:
    obj = getattr(module, name)
    if inspect.isfunction(obj):
      yield name, obj
    elif inspect.isclass(obj):
      for key, value in vars(obj).items():
        if inspect.isfunction(value) and (
          not key.startswith('_') or key == '__call__'
        ):
          yield f'{name}.{key}', value


def test_public_functions_declare_their_return_type():
  missing = [
    f'{module.__name__}.{name}'
    for module in (schedules, plots)
    for name, fn in _public_callables(module)
    if inspect.signature(fn).return_annotation is inspect.Signature.empty
  ]
  if inspect.signature(batch.per_update).return_annotation is (
    inspect.Signature.empty
  ):
    missing.append('lrjax.batch.per_update')
  assert not missing, missing


def test_importing_and_drawing_leave_the_matplotlib_backend_alone(tmp_path):
  # A fresh interpreter with a non-Agg backend chosen by the user: lrjax's
  # figures must neither switch it nor need pyplot to render a PNG.
  code = textwrap.dedent(
    f"""
    import sys
    import matplotlib
    from lrjax import plots, schedules
    fig = plots.plot_schedules(
      [schedules.cosine(0.1, length=10)], t_max=10, num_points=11,
      path={str(tmp_path / 'lr.png')!r})
    plots.plot_lines([0, 1], {{'a': [1, 2]}}, path={str(tmp_path / 'l.png')!r})
    print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)
    """
  )
  env = dict(os.environ, MPLBACKEND='svg', PYTHONPATH=str(ROOT))
  out = subprocess.run(
    [sys.executable, '-c', code],
    env=env,
    capture_output=True,
    text=True,
    check=True,
    cwd=tmp_path,
  )
  assert out.stdout.split() == ['svg', 'False'], out.stderr
  for name in ('lr.png', 'l.png'):
    assert (tmp_path / name).read_bytes().startswith(b'\x89PNG')
