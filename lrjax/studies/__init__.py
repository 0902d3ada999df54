"""Studies: trials over seeds, trained or reused, and their report.

A study is what an experiment of lrjax is, and what a researcher's own can
be: `Trial`s (a name, seeds, a trainer config and a task per seed) and an
analysis of the finished `Run`s into a `Report`. `run` trains every seed
once into its own directory, reuses a finished run of the same config and
task, resumes an unfinished one from its last checkpoint and refuses a
workdir that holds another config; `lrjax.evidence` turns the seeds'
values into verdicts, `Metric` compares runs on a final metric, and the
files helpers write JSON and tables atomically. `entry_points` gives a
study its absl command line, its settings declared once as a dataclass of
`setting` fields (`define_flags`, `read_flags`, `check_settings`).

Examples:
  >>> from lrjax import studies
  >>> studies.VAL_LOSS.best([2.1, float('nan'), 1.9])
  2
  >>> studies.jsonable({'lr': 0.1, 'acc': float('nan')})
  {'lr': 0.1, 'acc': None}
"""

from lrjax.studies._cli import RunnerSettings as RunnerSettings
from lrjax.studies._cli import entry_points as entry_points
from lrjax.studies._cli import flags_text as flags_text
from lrjax.studies._files import jsonable as jsonable
from lrjax.studies._files import load_variables as load_variables
from lrjax.studies._files import markdown_table as markdown_table
from lrjax.studies._files import read_json as read_json
from lrjax.studies._files import save_variables as save_variables
from lrjax.studies._files import write_json as write_json
from lrjax.studies._files import write_text as write_text
from lrjax.studies._runs import ACCURACY as ACCURACY
from lrjax.studies._runs import VAL_BPB as VAL_BPB
from lrjax.studies._runs import VAL_LOSS as VAL_LOSS
from lrjax.studies._runs import Metric as Metric
from lrjax.studies._runs import Run as Run
from lrjax.studies._runs import adaptive_trainer as adaptive_trainer
from lrjax.studies._runs import final_variables as final_variables
from lrjax.studies._runs import first_reaching as first_reaching
from lrjax.studies._runs import summarize as summarize
from lrjax.studies._runs import train_run as train_run
from lrjax.studies._settings import Check as Check
from lrjax.studies._settings import above as above
from lrjax.studies._settings import at_least as at_least
from lrjax.studies._settings import check_settings as check_settings
from lrjax.studies._settings import define_flags as define_flags
from lrjax.studies._settings import distinct as distinct
from lrjax.studies._settings import fraction as fraction
from lrjax.studies._settings import increasing as increasing
from lrjax.studies._settings import positive as positive
from lrjax.studies._settings import read_flags as read_flags
from lrjax.studies._settings import refuse as refuse
from lrjax.studies._settings import setting as setting
from lrjax.studies._study import Context as Context
from lrjax.studies._study import Report as Report
from lrjax.studies._study import Study as Study
from lrjax.studies._study import Trial as Trial
from lrjax.studies._study import check_train_configs as check_train_configs
from lrjax.studies._study import check_trials as check_trials
from lrjax.studies._study import hold_workdir as hold_workdir
from lrjax.studies._study import run as run

__all__ = [
  'ACCURACY',
  'Check',
  'Context',
  'Metric',
  'Report',
  'Run',
  'RunnerSettings',
  'Study',
  'Trial',
  'VAL_BPB',
  'VAL_LOSS',
  'above',
  'adaptive_trainer',
  'at_least',
  'check_settings',
  'check_train_configs',
  'check_trials',
  'define_flags',
  'distinct',
  'entry_points',
  'final_variables',
  'first_reaching',
  'flags_text',
  'fraction',
  'hold_workdir',
  'increasing',
  'jsonable',
  'load_variables',
  'markdown_table',
  'positive',
  'read_flags',
  'read_json',
  'refuse',
  'run',
  'save_variables',
  'setting',
  'summarize',
  'train_run',
  'write_json',
  'write_text',
]
