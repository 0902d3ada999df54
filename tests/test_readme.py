"""The README's Python blocks run, and print what their comments say.

Each ```python block runs in one shared namespace, statement by statement.
A `print(...)` statement whose last line ends in `# text` must print
exactly `text`, up to an optional `: explanation` (a colon and a space).
"""

import ast
import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'


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
  assert len(_blocks()) >= 4


def test_readme_python_blocks_print_their_comments(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  namespace: dict = {}
  checked = 0
  for block in _blocks():
    lines = block.splitlines()
    for node in ast.parse(block).body:
      code = '\n'.join(lines[node.lineno - 1 : node.end_lineno])
      out = io.StringIO()
      with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), 'exec'), namespace)
      expected = _expected(lines[node.end_lineno - 1])
      if _is_print(node) and expected is not None:
        assert out.getvalue().strip() == expected, code
        checked += 1
  assert checked >= 8
