"""Studies: trials over seeds, trained or reused, and their report.

A study is what an experiment of lrjax is, and what a researcher's own can
be: `Trial`s (a name, seeds, a trainer config and a task per seed) and an
analysis of the finished `Run`s into a `Report`. `run` trains every seed
once into its own directory, reuses a finished run of the same config and
task, resumes an unfinished one from its last checkpoint and refuses a
workdir that holds another config; `lrjax.evidence` turns the seeds'
values into verdicts, `Metric` compares runs on a final metric, and the
files helpers write JSON and tables atomically.

Examples:
  >>> from lrjax import studies
  >>> studies.VAL_LOSS.best([2.1, float('nan'), 1.9])
  2
  >>> studies.jsonable({'lr': 0.1, 'acc': float('nan')})
  {'lr': 0.1, 'acc': None}
"""

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
  'VAL_BPB',
  'VAL_LOSS',
  'Context',
  'Metric',
  'Report',
  'Run',
  'Study',
  'Trial',
  'adaptive_trainer',
  'check_train_configs',
  'check_trials',
  'final_variables',
  'first_reaching',
  'hold_workdir',
  'jsonable',
  'load_variables',
  'markdown_table',
  'read_json',
  'run',
  'save_variables',
  'summarize',
  'train_run',
  'write_json',
  'write_text',
]
