"""lrjax.lm: the transformer, its loss and metrics, the n-gram baselines."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lrjax import data, lm

SMALL = dict(num_layers=2, num_heads=2, width=32, seq_len=16)


def _random_batch(seed: int, batch: int, seq_len: int, vocab: int = 256):
  tokens = np.random.default_rng(seed).integers(0, vocab, (batch, seq_len + 1))
  return {'tokens': jnp.asarray(tokens, jnp.int32)}


@nnx.jit
def _forward(model, tokens):
  return model(tokens)


def _loss(model, batch):
  return float(lm.lm_loss(_forward(model, lm.lm_inputs(batch)), batch)[0])


@pytest.mark.parametrize(
  'kwargs',
  [{}, dict(positions='rotary'), dict(tie_embeddings=False, use_bias=True)],
)
def test_loss_at_init_is_ln_vocab_plus_half_the_logit_variance(kwargs):
  # The final layer norm gives every position a vector h with |h|^2 = d
  # (unit scale, zero bias), and the output weights are N(0, s^2), so each
  # logit is ~ N(0, s^2 d) and E[logsumexp] = ln V + s^2 d / 2 up to a
  # Jensen gap of (e^{s^2 d} - 1) / (2V) < 1e-4. For s = 0.02, d = 128:
  # ln 256 + 0.0256. (Tied embeddings give the input byte's own logit about
  # 1.1 more, adding (e^1.1 - 1) / 256 = 0.008 for random tokens, whose
  # target is the input byte only 1 time in 256.) Over 8 seeds of one
  # 16 x 64 batch the excess had a standard deviation of 0.006 to 0.010, so
  # the mean of 4 seeds is within 0.02 (two standard deviations of one).
  config = lm.TransformerConfig(**kwargs)
  losses = [
    _loss(
      lm.Transformer(config, rngs=nnx.Rngs(seed)), _random_batch(seed, 16, 64)
    )
    for seed in range(4)
  ]
  expected = math.log(256) + 0.02**2 * 128 / 2
  assert abs(np.mean(losses) - expected) < 0.02, (losses, expected)


def test_loss_at_init_is_ln_vocab_with_tiny_weights():
  # Logit standard deviation s sqrt(d) = 1e-3 * sqrt(32) = 0.0057: the
  # mean target logit over 512 targets is within 4 * 0.0057 / sqrt(512) =
  # 1e-3 of 0, and s^2 d / 2 = 1.6e-5 (the input token's own logit, larger
  # by about |E_x|^2 / std(x) = 0.03 with tied embeddings, adds < 3e-4).
  config = lm.TransformerConfig(init_std=1e-3, **SMALL)
  model = lm.Transformer(config, rngs=nnx.Rngs(0))
  assert abs(_loss(model, _random_batch(0, 32, 16)) - math.log(256)) < 1e-3


@pytest.mark.parametrize('positions', ['learned', 'rotary'])
def test_logits_at_a_position_ignore_later_tokens(positions):
  config = lm.TransformerConfig(positions=positions, **SMALL)
  model = lm.Transformer(config, rngs=nnx.Rngs(1))
  tokens = _random_batch(2, 3, 16)['tokens'][:, :16]
  changed = tokens.at[:, 9].set((tokens[:, 9] + 7) % 256)
  a, b = _forward(model, tokens), _forward(model, changed)
  np.testing.assert_array_equal(a[:, :9], b[:, :9])
  assert np.all(np.abs(a[:, 9:] - b[:, 9:]).max(axis=(0, 2)) > 1e-4)


def test_shapes_dtypes_and_input_checks():
  model = lm.Transformer(
    lm.TransformerConfig(dtype='bfloat16', **SMALL), rngs=nnx.Rngs(0)
  )
  out = _forward(model, jnp.zeros((2, 5), jnp.int32))  # shorter: fine
  assert out.shape == (2, 5, 256) and out.dtype == jnp.float32
  with pytest.raises(ValueError, match='more than seq_len=16'):
    model(jnp.zeros((1, 17), jnp.int32))
  with pytest.raises(ValueError, match=r'\[batch, time\]'):
    model(jnp.zeros((17,), jnp.int32))


@pytest.mark.parametrize(
  'kwargs',
  [
    {},
    dict(positions='rotary'),
    dict(tie_embeddings=False, use_bias=True, mlp_ratio=2),
    dict(vocab_size=65, num_layers=1, num_heads=8, width=64, seq_len=32),
  ],
)
def test_num_params_counts_the_models_parameters(kwargs):
  config = lm.TransformerConfig(**kwargs)
  model = nnx.eval_shape(lambda: lm.Transformer(config, rngs=nnx.Rngs(0)))
  leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
  assert config.num_params == sum(x.size for x in leaves)


def test_default_size_and_flops_per_token_by_hand():
  config = lm.TransformerConfig()
  # V d + T d + L 12 d^2 + (2L + 1) d, d = 128, L = 4, V = 256, T = 64.
  assert config.num_params == 32768 + 8192 + 786432 + 1152
  # 6 (L 12 d^2 + V d) + 12 L d T.
  assert config.flops_per_token() == 6 * (786432 + 32768) + 12 * 4 * 128 * 64
  assert config.flops_per_token(128) - config.flops_per_token() == (
    12 * 4 * 128 * 64
  )


def test_dropout_follows_train_and_eval_modes():
  rngs = dict(params=0, dropout=1)
  plain = lm.Transformer(lm.TransformerConfig(**SMALL), rngs=nnx.Rngs(**rngs))
  dropped = lm.Transformer(
    lm.TransformerConfig(dropout=0.5, **SMALL), rngs=nnx.Rngs(**rngs)
  )
  tokens = _random_batch(0, 2, 16)['tokens'][:, :16]
  first = _forward(dropped, tokens)  # fresh modules are in train mode
  assert not np.allclose(first, _forward(dropped, tokens))
  dropped.eval()
  expected = _forward(plain, tokens)
  np.testing.assert_allclose(_forward(dropped, tokens), expected, rtol=1e-6)
  np.testing.assert_array_equal(
    _forward(dropped, tokens), _forward(dropped, tokens)
  )
  dropped.train()
  assert not np.allclose(_forward(dropped, tokens), expected)


def test_rotary_rotates_pairs_by_position_times_frequency():
  # Head size 4: frequencies 1 and base^(-1/2) = 0.01 for base 1e4.
  x = jnp.array([[[1.0, 2.0, 3.0, 4.0]]] * 3)  # [T=3, heads=1, D=4]
  out = lm.rotary(x, jnp.arange(3), 1e4)
  for p in range(3):
    for i, theta in enumerate([1.0, 0.01]):
      a, b = float(x[p, 0, i]), float(x[p, 0, i + 2])
      c, s = math.cos(p * theta), math.sin(p * theta)
      np.testing.assert_allclose(
        [out[p, 0, i], out[p, 0, i + 2]],
        [a * c - b * s, b * c + a * s],
        rtol=1e-6,
      )


def test_rotary_scores_depend_on_the_position_difference_only():
  rng = np.random.default_rng(0)
  q, k = (
    jnp.asarray(rng.normal(size=(1, 1, 8)), jnp.float32) for _ in range(2)
  )

  def score(m, n):
    qm = lm.rotary(q, jnp.array([m]), 1e4)[0, 0]
    kn = lm.rotary(k, jnp.array([n]), 1e4)[0, 0]
    return float(qm @ kn)

  np.testing.assert_allclose(score(5, 2), score(105, 102), rtol=1e-4)
  np.testing.assert_allclose(score(0, 0), float(q[0, 0] @ k[0, 0]), rtol=1e-6)
  assert abs(score(5, 2) - score(5, 3)) > 1e-3


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(width=130), 'multiple of num_heads=4'),
    (dict(width=12, num_heads=4, positions='rotary'), 'even head size'),
    (dict(positions='alibi'), 'positions'),
    (dict(dropout=1.0), 'dropout'),
    (dict(dtype='float16'), 'dtype'),
    (dict(num_layers=0), 'num_layers'),
  ],
)
def test_config_errors_name_the_field(kwargs, match):
  with pytest.raises(ValueError, match=match):
    lm.TransformerConfig(**kwargs)


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_lm_loss_and_eval_metrics_against_numpy():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
  tokens = np.array([[4, 0, 2, 2], [1, 1, 3, 0]], np.int32)
  logp = _log_softmax(logits)
  targets = tokens[:, 1:]
  nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  correct = logits.argmax(-1) == targets
  loss, metrics = jax.jit(lm.lm_loss)(logits, {'tokens': tokens})
  np.testing.assert_allclose(loss, nll.mean(), rtol=1e-6)
  np.testing.assert_allclose(
    metrics['bits_per_byte'], nll.mean() / math.log(2), rtol=1e-6
  )
  np.testing.assert_allclose(metrics['accuracy'], correct.mean())
  per = lm.lm_eval_metrics(logits, {'tokens': tokens})
  np.testing.assert_allclose(per['loss'], nll.mean(1), rtol=1e-6)
  np.testing.assert_allclose(per['accuracy'], correct.mean(1))
  # Two bytes per token: half the bits per byte.
  half = lm.lm_loss(logits, {'tokens': tokens}, bytes_per_token=2.0)[1]
  np.testing.assert_allclose(
    half['bits_per_byte'], nll.mean() / math.log(2) / 2, rtol=1e-6
  )
  np.testing.assert_allclose(lm.perplexity(nll.mean()), np.exp(nll.mean()))
  with pytest.raises(ValueError, match='lm_inputs'):
    lm.lm_loss(logits, {'tokens': tokens[:, :3]})


def test_unigram_and_bigram_baselines_by_hand():
  # Train "aab" over V = 3 (c is never seen), alpha = 1:
  # unigram p = (3, 2, 1) / 6; evaluate "acb": -(ln 3/6 + ln 1/6 + ln 2/6) / 3.
  got = lm.unigram_loss([0, 0, 1], [0, 2, 1], vocab_size=3, alpha=1.0)
  np.testing.assert_allclose(got, -np.log([3 / 6, 1 / 6, 2 / 6]).mean())
  # Bigram pairs aa, ab: p(.|a) = (2, 2, 1)/5; context b and c unseen:
  # uniform 1/3. Evaluate "abca": p(b|a) = 2/5, p(c|b) = 1/3, p(a|c) = 1/3.
  got = lm.bigram_loss([0, 0, 1], [0, 1, 2, 0], vocab_size=3, alpha=1.0)
  np.testing.assert_allclose(got, -np.log([2 / 5, 1 / 3, 1 / 3]).mean())
  with pytest.raises(ValueError, match='alpha'):
    lm.unigram_loss([0], [0], vocab_size=2, alpha=0.0)
  with pytest.raises(ValueError, match='outside'):
    lm.bigram_loss([0, 5], [0, 1], vocab_size=3)
  with pytest.raises(ValueError, match='two tokens'):
    lm.bigram_loss([0, 1], [0], vocab_size=3)


def test_count_baselines_score_the_evaluation_windows_by_hand():
  # Train "abab" (a = 97, b = 98), V = 256, alpha = 0.5. Evaluate "abbab"
  # at T = 2: (5 - 1) // 2 = 2 windows, "abb" and "bab", tokens "abbab";
  # at T = 3 one window "abba", the last "b" in none.
  train = data.TextDataset.from_text('abab', seq_len=1)
  p_a = p_b = 2.5 / (4 + 128)
  # Pairs ab, ba, ab: p(b|a) = 2.5 / (2 + 128), p(a|b) = 1.5 / (1 + 128),
  # p(b|b) = 0.5 / (1 + 128).
  p_ba, p_ab, p_bb = 2.5 / 130, 1.5 / 129, 0.5 / 129
  for seq_len, unigram, bigram in (
    (2, [p_a, p_b, p_b, p_a, p_b], [p_ba, p_bb, p_ab, p_ba]),
    (3, [p_a, p_b, p_b, p_a], [p_ba, p_bb, p_ab]),
  ):
    evaluate = data.TextDataset.from_text('abbab', seq_len=seq_len)
    got = lm.count_baselines(train, evaluate)
    assert list(got) == ['unigram', 'bigram']
    np.testing.assert_allclose(got['unigram'], -np.log(unigram).mean())
    np.testing.assert_allclose(got['bigram'], -np.log(bigram).mean())
  # alpha = 1 over V = 100: p(a) = 3 / 104.
  got = lm.count_baselines(train, evaluate, 100, alpha=1.0)
  np.testing.assert_allclose(got['unigram'], -np.log(3 / 104))
  with pytest.raises(ValueError, match='outside'):
    lm.count_baselines(train, evaluate, vocab_size=98)


def test_a_few_adam_steps_learn_a_periodic_text():
  # "abc" repeated: each byte determines the next, so the loss can go to 0.
  config = lm.TransformerConfig(num_layers=1, num_heads=2, width=32, seq_len=15)
  model = lm.Transformer(config, rngs=nnx.Rngs(0))
  tokens = jnp.asarray(np.tile(np.frombuffer(b'abc', np.uint8), (4, 6))[:, :16])
  batch = {'tokens': tokens.astype(jnp.int32)}
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    def loss_fn(m):
      return lm.lm_loss(m(lm.lm_inputs(batch)), batch)[0]

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  first = float(step(model, optimizer))
  for _ in range(40):
    last = float(step(model, optimizer))
  assert first > 5.0 and last < 0.1, (first, last)


def test_confidence_metrics_by_hand():
  # Position 0: p = (0.75, 0.25), predicts 0, target 0 (right, 0.75).
  # Position 1: p = (0.5, 0.5), argmax 0, target 1 (wrong, 0.5).
  logits = jnp.log(jnp.array([[[3.0, 1.0], [1.0, 1.0]]] * 2))
  batch = {'tokens': jnp.array([[1, 0, 1], [1, 1, 0]])}
  m = lm.confidence_metrics(logits, batch)
  # Sequence 2 is right at position 1 only: (0 + 0.5) / 2.
  np.testing.assert_allclose(m['confidence'], [0.625, 0.625], rtol=1e-6)
  np.testing.assert_allclose(m['correct_confidence'], [0.375, 0.25], rtol=1e-6)


def test_eval_metrics_with_confidence_by_hand():
  # As above: the loss of sequence 1 is -(ln 0.75 + ln 0.5) / 2, accuracy
  # 1/2; of sequence 2, -(ln 0.25 + ln 0.5) / 2, accuracy 1/2.
  logits = jnp.log(jnp.array([[[3.0, 1.0], [1.0, 1.0]]] * 2))
  batch = {'tokens': jnp.array([[1, 0, 1], [1, 1, 0]])}
  m = jax.jit(lambda x, b: lm.lm_eval_metrics(x, b, confidence=True))(
    logits, batch
  )
  # The order of the keys (the evaluation's columns); jit sorts them.
  assert list(lm.lm_eval_metrics(logits, batch, confidence=True)) == [
    'loss',
    'bits_per_byte',
    'accuracy',
    'confidence',
    'correct_confidence',
  ]
  loss = -np.log([[0.75, 0.5], [0.25, 0.5]]).mean(1)
  np.testing.assert_allclose(m['loss'], loss, rtol=1e-6)
  np.testing.assert_allclose(m['bits_per_byte'], loss / np.log(2), rtol=1e-6)
  np.testing.assert_allclose(m['accuracy'], [0.5, 0.5])
  np.testing.assert_allclose(m['confidence'], [0.625, 0.625], rtol=1e-6)
  np.testing.assert_allclose(m['correct_confidence'], [0.375, 0.25], rtol=1e-6)
  assert set(lm.lm_eval_metrics(logits, batch)) == {
    'loss',
    'bits_per_byte',
    'accuracy',
  }
