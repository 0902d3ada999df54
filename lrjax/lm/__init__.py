"""Language models: a decoder-only transformer, its loss, count baselines.

The pieces a trainer task needs::

  model = Transformer(TransformerConfig(), rngs=nnx.Rngs(params=0, dropout=1))
  logits = model(lm_inputs(batch))          # batch: {'tokens': [B, T + 1]}
  loss, metrics = lm_loss(logits, batch)    # nats; bits_per_byte; accuracy
  per_example = lm_eval_metrics(logits, batch)
  confidence = confidence_metrics(logits, batch)  # LRBench++
  both = lm_eval_metrics(logits, batch, confidence=True)

and, to read a loss against something, the unigram and bigram cross-entropy
of the same split (`unigram_loss`, `bigram_loss`; both of a corpus's
splits: `count_baselines`). The model's attention and dense products are
public (`causal_attention`, `dense_dot_general`) for a researcher's own
model: the same values as JAX's, with backward passes that run faster on
the CPU. Tokens are bytes
(`lrjax.data.load_text`), so bits per byte is the loss over ln 2.
"""

from lrjax.lm._baseline import bigram_loss as bigram_loss
from lrjax.lm._baseline import count_baselines as count_baselines
from lrjax.lm._baseline import unigram_loss as unigram_loss
from lrjax.lm._loss import confidence_metrics as confidence_metrics
from lrjax.lm._loss import lm_eval_metrics as lm_eval_metrics
from lrjax.lm._loss import lm_inputs as lm_inputs
from lrjax.lm._loss import lm_loss as lm_loss
from lrjax.lm._loss import perplexity as perplexity
from lrjax.lm._model import Transformer as Transformer
from lrjax.lm._model import TransformerConfig as TransformerConfig
from lrjax.lm._model import rotary as rotary
from lrjax.lm._ops import causal_attention as causal_attention
from lrjax.lm._ops import dense_dot_general as dense_dot_general

__all__ = [
  'Transformer',
  'TransformerConfig',
  'bigram_loss',
  'causal_attention',
  'confidence_metrics',
  'count_baselines',
  'dense_dot_general',
  'lm_eval_metrics',
  'lm_inputs',
  'lm_loss',
  'perplexity',
  'rotary',
  'unigram_loss',
]
