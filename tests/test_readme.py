"""The README's Python blocks run as copied, and print what their comments
say.

Each ```python block runs on its own in a fresh interpreter (a block that
uses a name it does not import or define fails), statement by statement.
A `print(...)` statement whose last line ends in `# text` must print
exactly `text`, up to an optional `: explanation` (a colon and a space).
"""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'

# Runs one block statement by statement in a fresh namespace; prints, as
# its last line, a JSON list of [statement's last line, its stdout].
_RUNNER = r"""
import ast, contextlib, io, json, sys
block = sys.stdin.read()
lines = block.splitlines()
namespace = {'__name__': '__main__'}
outputs = []
for node in ast.parse(block).body:
  code = '\n'.join(lines[node.lineno - 1 : node.end_lineno])
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(code, 'README.md', 'exec'), namespace)
  outputs.append([node.lineno, node.end_lineno, out.getvalue()])
print(json.dumps(outputs))
"""


def _blocks() -> list[str]:
  return re.findall(r'```python\n(.*?)```', README.read_text(), re.S)


def _expected(line: str) -> str | None:
  code_and_comment = line.split('  # ', 1)
  if len(code_and_comment) != 2:
    return None
  return code_and_comment[1].split(': ', 1)[0].strip()


def _is_print(node: ast.stmt) -> bool:
  return (
    isinstance(node, ast.Expr)
    and isinstance(node.value, ast.Call)
    and getattr(node.value.func, 'id', None) == 'print'
  )


def test_readme_has_python_blocks():
  assert len(_blocks()) >= 10


@pytest.mark.parametrize('index', range(len(_blocks())))
def test_each_readme_block_runs_alone_and_prints_its_comments(index, tmp_path):
  block = _blocks()[index]
  env = {
    **os.environ,
    'JAX_PLATFORMS': 'cpu',
    'PYTHONPATH': str(ROOT),
    'XLA_FLAGS': '',
  }
  child = subprocess.run(
    [sys.executable, '-c', _RUNNER],
    input=block,
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env=env,
    timeout=600,
  )
  assert child.returncode == 0, f'block {index}:\n{child.stderr[-3000:]}'
  outputs = json.loads(child.stdout.strip().splitlines()[-1])
  lines = block.splitlines()
  statements = ast.parse(block).body
  assert len(outputs) == len(statements)
  for node, (_, end, out) in zip(statements, outputs, strict=True):
    expected = _expected(lines[end - 1])
    if _is_print(node) and expected is not None:
      assert out.strip() == expected, lines[node.lineno - 1 : end]
