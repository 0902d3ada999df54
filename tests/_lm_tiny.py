"""The tiny language-model setting the LM experiment tests share.

One layer of width 32 on sequences of 16 bytes of `python_text/docs`, so a
run takes seconds on a CPU. Each test adds what it is about (its batch,
its device cap, the noise tracker) as overrides.
"""

from experiments import _lm_common, lm


def tiny_common(data_dir, cache, **overrides):
  """`LmCommon` of the tiny model, one seed, `overrides` on top."""
  base = dict(
    data_dir=data_dir,
    seq_len=16,
    lm_layers=1,
    lm_heads=2,
    lm_width=32,
    eval_sequences=32,
    log_every=1,
    seeds=(0,),
    compilation_cache_dir=cache,
  )
  return _lm_common.LmCommon(**{**base, **overrides})


def tiny_lm(common, **overrides):
  """`LmConfig` of one cosine run at a constant batch on 4096 tokens."""
  base = dict(
    common=common,
    train_tokens=4096,  # 256 sequences of 16
    eval_every_tokens=2048,
    warmup_tokens=256,
    lr_policies=('cosine',),
    batch_schedules=('constant',),
  )
  return lm.LmConfig(**{**base, **overrides})
