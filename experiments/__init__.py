"""Runnable experiments over lrjax: `python -m experiments.<name>`.

Each experiment is a thin absl entry point (`ramp`, `lrbench`, `sharpness`,
`lr_find`, and for language models `lm` and `finetune`) that turns its
flags into one typed config, runs the library, and writes into its
workdir: `flags.cfg`, `config.json`, one trainer workdir per run (with
`metrics.jsonl`), `results.json`, `results.md`, PNG figures and
`report.md`.
"""
