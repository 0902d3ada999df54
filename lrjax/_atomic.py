"""Writing a file so that a kill leaves the old or the new one, never a mix."""

from __future__ import annotations

import os


def write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` through a temporary file, synced, then
  renamed over it (and the directory synced, so the rename survives a crash)."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def write_text(path: str, text: str) -> None:
  """`write_bytes` of ``text`` in UTF-8."""
  write_bytes(path, text.encode('utf-8'))
