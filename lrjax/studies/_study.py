"""A study is its trials and its analysis; `run` does everything else.

A `Study` declares its `Trial`s (a name, seeds, a trainer config and a task
per seed, optional hooks and checks) and ``analyze(runs, workdir) ->
Report``. `run` holds the workdir locked, writes its config, trains (or
reuses, or resumes) every seed of every trial with progress lines, and
writes the report's results.json, results.md and report.md. A study in
phases (one trial's result choosing the next) overrides `Study.run` and
trains with `Context.train`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from lrjax.studies import _files, _runs


@dataclasses.dataclass(frozen=True)
class Trial:
  """One configuration, trained once per seed.

  Attributes:
    name: a row of the study's table; its runs live in
      ``<workdir>/<under>/<name>/seed<seed>``.
    seeds: the seeds.
    config: ``config(seed) -> lrjax.train.TrainConfig``.
    task: ``task(seed) -> lrjax.train.Task``.
    train, after, extra: as `train_run` takes them.
    describe: logged once before the trial's first seed.
    check: ``check(configs)``, more checks of its trainer configs before
      anything trains (e.g. the adaptive batch's).
  """

  name: str
  seeds: Sequence[int]
  config: Callable[[int], Any]
  task: Callable[[int], Any]
  train: Callable[..., Any] | None = None
  after: Callable[[Any, str], Mapping[str, Any]] | None = None
  extra: Mapping[str, Any] | None = None
  describe: str = ''
  check: Callable[[Sequence[Any]], None] | None = None


@dataclasses.dataclass(frozen=True)
class Report:
  """What a study writes: results.json, results.md (table) and report.md."""

  results: dict[str, Any]
  table: str
  text: str


def check_train_configs(configs: Sequence[Any], num_examples: int) -> None:
  """Validates trainer configs against this machine's local devices and
  ``num_examples`` training examples (ValueError naming the first bad
  field)."""
  import jax

  for config in configs:
    config.validate(
      num_local_devices=jax.local_device_count(),
      num_train_examples=num_examples,
    )


def check_trials(trials: Sequence[Trial], num_examples: int) -> None:
  """Validates every trial's trainer config for each of its seeds, and runs
  its own ``check``: a study calls it before anything trains."""
  for trial in trials:
    configs = [trial.config(seed) for seed in trial.seeds]
    check_train_configs(configs, num_examples)
    if trial.check is not None:
      trial.check(configs)


@dataclasses.dataclass(frozen=True)
class Context:
  """A study's workdir while it runs."""

  workdir: str
  overwrite: bool = False

  def train(
    self, trials: Sequence[Trial], under: str = 'runs'
  ) -> dict[str, list[_runs.Run]]:
    """Trains (or reuses, or resumes) each trial's seeds, logging ``trial
    k/n, seed j/m`` before each; returns the runs by trial name."""
    from absl import logging

    runs = {}
    for k, trial in enumerate(trials, 1):
      if trial.describe:
        logging.info('%s: %s', trial.name, trial.describe)
      runs[trial.name] = [
        _runs.train_run(
          trial.name,
          seed,
          trial.config(seed),
          os.path.join(self.workdir, under, trial.name, f'seed{seed}'),
          trial.task(seed),
          after=trial.after,
          train=trial.train,
          extra=trial.extra,
          overwrite=self.overwrite,
          progress=f'trial {k}/{len(trials)}, seed {j}/{len(trial.seeds)}',
        )
        for j, seed in enumerate(trial.seeds, 1)
      ]
    return runs


class Study:
  """A study: subclasses set `name` and implement `check`, `trials` and
  `analyze` (or override `run` for trials in phases)."""

  name = ''

  def __init__(self, config: Any) -> None:
    self.config = config

  def check(self) -> None:
    """Raises ValueError (naming the setting and the fix) for a bad one."""

  def trials(self) -> Sequence[Trial]:
    """The study's trials."""
    raise NotImplementedError(f'{type(self).__name__}: implement trials()')

  def analyze(self, runs: dict[str, list[_runs.Run]], workdir: str) -> Report:
    """Tables, claims, figures and the report from the finished runs."""
    raise NotImplementedError(f'{type(self).__name__}: implement analyze()')

  def run(self, context: Context) -> Report:
    """Trains the trials and analyses them."""
    return self.analyze(context.train(self.trials()), context.workdir)


@contextlib.contextmanager
def hold_workdir(
  workdir: str, config: Any, files: Mapping[str, str] | None = None
) -> Iterator[None]:
  """Holds ``workdir`` locked (`lrjax.train.lock_workdir`) with its
  config.json (`jsonable` of ``config``) and ``files`` (name -> text, e.g.
  the flags that repeat the run) written.

  Raises:
    lrjax.train.WorkdirLockedError: another process holds it.
  """
  from lrjax import train as lrtrain

  os.makedirs(workdir, exist_ok=True)
  with lrtrain.lock_workdir(workdir):
    for name, text in (files or {}).items():
      _files.write_text(os.path.join(workdir, name), text)
    _files.write_json(os.path.join(workdir, 'config.json'), config)
    yield


def run(
  study: Study,
  workdir: str,
  *,
  overwrite: bool = False,
  files: Mapping[str, str] | None = None,
) -> dict[str, Any]:
  """Runs a study that passed `Study.check` into ``workdir``.

  Holds the workdir (`hold_workdir`), runs the study (its runs reused,
  resumed or trained; all of them trained afresh with ``overwrite``) and
  writes its report: results.json, results.md (the table) and report.md.

  Args:
    study: the checked study.
    workdir: the directory of every output.
    overwrite: train every run afresh, deleting what it left.
    files: more files to write there first (name -> text).

  Returns:
    The report's results.

  Raises:
    lrjax.train.ConfigMismatchError: for a run of another config there.
    lrjax.train.WorkdirLockedError: when another process holds it.
  """
  with hold_workdir(workdir, study.config, files):
    report = study.run(Context(workdir, overwrite))
    _files.write_json(os.path.join(workdir, 'results.json'), report.results)
    _files.write_text(os.path.join(workdir, 'results.md'), report.table)
    _files.write_text(os.path.join(workdir, 'report.md'), report.text)
  return report.results
