"""Runnable studies over lrjax: `python -m experiments.<name>`.

Each experiment (`ramp`, `lrbench`, `sharpness`, `lr_find`, `goyal`,
`recipe`, `scaling`, and for language models `lm` and `finetune`) is a
`lrjax.studies.Study` and its settings; it writes into its workdir
`flags.cfg`, `config.json`, one trainer workdir per run (`metrics.jsonl`,
checkpoints), `results.json`, `results.md`, PNG figures and `report.md`.
"""
