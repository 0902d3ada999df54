"""The bundled `python_text` TFDS dataset: text every Python install ships.

Two configs, two domains of one interpreter's own files:

- ``python_text/docs``: the CPython documentation topics
  (``pydoc_data/topics.py``, about 0.46 M characters of English reference
  prose);
- ``python_text/stdlib``: the standard library's ``.py`` source files
  (about 30 MB of Python code).

A package of its own because TFDS locates a builder's resources through its
package.
"""

from lrjax.data.python_text._builder import CONFIGS as CONFIGS
from lrjax.data.python_text._builder import PythonText as PythonText
from lrjax.data.python_text._builder import corpus as corpus
from lrjax.data.python_text._builder import docs_text as docs_text
from lrjax.data.python_text._builder import interpreter as interpreter
from lrjax.data.python_text._builder import split_bytes as split_bytes
from lrjax.data.python_text._builder import stdlib_text as stdlib_text

__all__ = [
  'CONFIGS',
  'PythonText',
  'corpus',
  'docs_text',
  'interpreter',
  'split_bytes',
  'stdlib_text',
]
