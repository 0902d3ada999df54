"""One runner for every experiment: a study is its trials and its analysis.

A study (`Study`) declares its trials (`Trial`: a name, seeds, a trainer
config and a task per seed, optional training function and hooks) and an
`analyze(runs, workdir) -> Report`. The runner (`run`) checks the study and
every trial's trainer config before anything trains, holds the workdir
(lock, ``config.json``, ``flags.cfg``), runs each trial's seeds (reusing a
finished run of the same config and task, resuming an unfinished one from
its last checkpoint: `experiments._runs.train_run`), logs
``trial k/n, seed j/m``, and writes ``results.json``, ``results.md`` and
``report.md``; `entry_points` gives an experiment its ``check``, ``run``
and absl ``main``.

A study whose trials depend on what earlier trials found (a probe, a
pre-trained model) overrides `Study.run` and trains in phases with
`Context.train`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from experiments import _common, _runs


@dataclasses.dataclass(frozen=True)
class Trial:
  """One configuration, trained once per seed.

  Attributes:
    name: the configuration's name (a row of the study's table); its runs
      live in ``<workdir>/<under>/<name>/seed<seed>``.
    seeds: the seeds.
    config: ``config(seed) -> lrjax.train.TrainConfig``.
    task: ``task(seed) -> lrjax.train.Task``.
    train: ``train(config, workdir, task, overwrite=...)``; None: the
      trainer (`lrjax.train.train_and_evaluate`).
    after: ``after(result, run_workdir) -> dict`` stored in the run's
      summary (computed once, after training).
    extra: what the summary depends on besides the config and the task
      (JSON-ready); a finished run is reused only with the same.
    describe: logged once before the trial's first seed.
    check: ``check(configs)``, more checks of the trial's trainer configs
      before anything trains (e.g. the adaptive batch's).
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
  """What a study's analysis writes: ``results.json`` (``results``), the
  table printed at the end (``results.md``) and ``report.md``."""

  results: dict[str, Any]
  table: str
  text: str


def check_trials(trials: Sequence[Trial], num_examples: int) -> None:
  """Validates every trial's trainer config for each of its seeds.

  Raises:
    ValueError: from the first bad config, naming its field.
  """
  for trial in trials:
    configs = [trial.config(seed) for seed in trial.seeds]
    _common.check_train_configs(configs, num_examples)
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
    """Trains (or reuses, or resumes) every trial's seeds, in order.

    Args:
      trials: the trials.
      under: the subdirectory of the workdir their runs live in.

    Returns:
      Each trial's runs, by name, in seed order.
    """
    from absl import logging

    runs: dict[str, list[_runs.Run]] = {}
    for k, trial in enumerate(trials, 1):
      if trial.describe:
        logging.info('%s: %s', trial.name, trial.describe)
      for j, seed in enumerate(trial.seeds, 1):
        runs.setdefault(trial.name, []).append(
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
        )
    return runs


class Study:
  """An experiment: its settings, trials and analysis.

  Subclasses set `name`, and implement `check` (everything that can be
  checked before training: raise ValueError naming the flag), `trials`
  and `analyze`, or override `run` for trials in phases.
  """

  name = ''

  def __init__(self, config: Any) -> None:
    self.config = config

  def check(self) -> None:
    """Raises ValueError (naming the flag) for a bad setting."""

  def trials(self) -> Sequence[Trial]:
    """The study's trials."""
    raise NotImplementedError

  def analyze(self, runs: dict[str, list[_runs.Run]], workdir: str) -> Report:
    """Tables, claims, figures and the report from the finished runs."""
    raise NotImplementedError

  def run(self, context: Context) -> Report:
    """Trains the trials and analyses them."""
    return self.analyze(context.train(self.trials()), context.workdir)


def run(
  study: Study,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
) -> dict[str, Any]:
  """Checks and runs a study, and writes its results and report.

  Args:
    study: the study.
    workdir: its directory (locked while running).
    with_flags: also write the parsed flags as ``flags.cfg``.
    overwrite: train every run afresh.

  Returns:
    The results (also in ``results.json``).

  Raises:
    ValueError: for a bad setting, before anything trains.
    lrjax.train.ConfigMismatchError: for a run of another config in
      ``workdir``.
    lrjax.train.WorkdirLockedError: when another process holds it.
  """
  study.check()
  with _common.experiment_workdir(workdir, study.config, with_flags=with_flags):
    report = study.run(Context(workdir, overwrite))
    _common.write_outputs(workdir, report.results, report.table, report.text)
  return report.results


def entry_points(
  study: Callable[[Any], Study], get_config: Callable[[], Any]
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., None]]:
  """An experiment's ``check(config)``, ``run(config, workdir, ...)`` and
  absl ``main(argv)`` for its study class.

  ``main`` builds the config from the flags, checks it before anything
  trains or is written (one ``FATAL`` line naming the flag otherwise),
  runs the study into ``--workdir`` (default ``runs/<name>``), prints the
  table, the claims (where the results have them) and the report's path.
  """

  def check(config: Any) -> Study:
    made = study(config)
    made.check()
    return made

  def run_config(config: Any, workdir: str, **kwargs: Any) -> dict[str, Any]:
    return run(study(config), workdir, **kwargs)

  def main(argv: Sequence[str]) -> None:
    done = _common.run_main(
      argv, study(None).name, get_config, run_config, check
    )
    if done is None:
      return
    results, workdir = done
    if results.get('claims'):
      _common.print_claims(results['claims'])
    _common.print_report_path(workdir)

  return check, run_config, main
