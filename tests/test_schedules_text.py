"""Text form: `str(parse(s)) == s` for every policy, and clear errors."""

import numpy as np
import pytest

from lrjax import schedules as S

CANONICAL = [
  'constant(0.1)',
  'step(0.1,length=30)',
  'step(0.1,length=2.5,gamma=0.5)',
  'multistep(0.1,milestones=60/120/160,gamma=0.2)',
  'multistep(0.1,milestones=60)',
  'multistep(1,milestones=3/7.5,factors=0.5/0.1)',
  'exponential(0.1,gamma=0.95)',
  'exponential(0.1,gamma=0.5,length=10,staircase=true)',
  'exponential(0.001,gamma=2,length=5,end=0.1)',
  'exponential(0.1,gamma=0.9,end=0.001)',
  'inverse_time(0.01,gamma=0.0001,power=0.75)',
  'polynomial(0.1,length=100,end=1e-05,power=2)',
  'polynomial(0.1,length=100,power=0.5,k_decay=2)',
  'inverse_sqrt(0.001,warmup=400)',
  'inverse_sqrt(0.001,warmup=0,timescale=1000,start=0)',
  'noam(512,warmup=4000)',
  'noam(1024,warmup=8000,factor=2)',
  'linear(0.1,end=0,length=10)',
  'sigmoid(0.1,gamma=-0.5,center=10,low=0.001)',
  'cosine(0.4,length=90)',
  'cosine(0.4,length=90,end=0.004)',
  'cosine(0.4,length=90,exponent=2,k_decay=0.5)',
  'cosine_restarts(0.1,period=10,mult=2,decay=0.5,end=0.001)',
  'cosine_restarts(0.1,period=10,mult=1.5,limit=3,k_decay=2)',
  'tanh_restarts(0.1,period=10)',
  'tanh_restarts(0.1,period=10,mult=2.5,decay=0.5,end=0.001,limit=2,'
  'lower=-7,upper=4)',
  'onecycle(0.1,length=1000)',
  'onecycle(0.1,length=1000,pct_start=0.25,anneal=linear,div_factor=10,'
  'final_div_factor=100,three_phase=true,offset=1)',
  'onecycle_momentum(1000,low=0.8,high=0.9,pct_start=0.25,anneal=linear)',
  'wsd(0.1,length=100,cooldown=20)',
  'wsd(0.1,length=100,cooldown=20,warmup=5,start=0,end=0.001,shape=sqrt)',
  'wsd(0.1,length=100,cooldown=20,warmup=5,warmup_shape=sqrt)',
  'tanh_decay(0.1,length=100,end=0.001,lower=-4,upper=4)',
  'triangular(0.001,high=0.1,length=2000)',
  'triangular(0.001,high=0.1,length=20,amplitude=half,phase=down,'
  'length_down=30)',
  'triangular(0.001,high=0.1,length=20,amplitude=exp,gamma=0.999)',
  'triangular_momentum(20)',
  'triangular_momentum(20,low=0.85,high=0.95,amplitude=exp,gamma=0.999,'
  'length_down=30)',
  'sine(0.001,high=0.1,length=20,amplitude=half,phase=down)',
  'cosine_cyclic(0.001,high=0.1,length=20,amplitude=exp,gamma=0.99,phase=up)',
  'sawtooth(0.001,high=0.1,length=20,shape=cosine,amplitude=half)',
  'warmup(cosine(0.4,length=90),length=5)',
  'warmup(multistep(3.2,milestones=30/60/80),length=5,shape=cosine,'
  'start=0.03125,shift=false)',
  'warmup(constant(1),length=0.5,shape=exponential,start=0.01)',
  'warmup(constant(1),length=10,shape=sqrt,start=0)',
  'seesaw(multistep(1,milestones=30/60/90,gamma=0.5),length=120,growth=4)',
  'seesaw(warmup(cosine(0.001,length=90,end=0.0001),length=10),length=100,'
  'growth=2.5,factor=3,max_cuts=2)',
  'in_epochs(cosine(0.4,length=90))',
  'in_updates(warmup(cosine(0.4,length=9000),length=500))',
  'noise(cosine(0.1,length=100),pct=0.1,begin=10,until=90,kind=uniform,seed=7)',
  'noise(constant(0.1),std=0.5)',
  'join(constant(0.1)/cosine(0.1,length=5),boundaries=3)',
  'join(constant(0.1)/constant(0.01)/constant(0.001),boundaries=3/6.5)',
  'scale(cosine(1,length=10),factor=0.4)',
  'clip(linear(0,end=1,length=10),low=0.1)',
  'clip(linear(0,end=1,length=10),low=0.1,high=0.9)',
  'product(constant(0.5)/step(1,length=3,gamma=0.5))',
  'reduce_on_plateau(0.1)',
  'reduce_on_plateau(0.1,factor=0.5,patience=2,cooldown=1,threshold=0.01,'
  'threshold_mode=abs,min_value=0.001)',
  'reduce_on_plateau(0.1,mode=max,value_per=epoch)',
  'switch_on_plateau(constant(0.1)/constant(0.01))',
  'switch_on_plateau(cosine(0.1,length=10)/constant(0.01),window=3,'
  'threshold=0.01,cooldown=2,clock=update)',
  'switch_on_plateau(constant(0.1)/constant(0.01),mode=max,value_per=epoch)',
]


@pytest.mark.parametrize('text', CANONICAL)
def test_round_trip(text):
  p = S.parse(text)
  assert str(p) == text
  assert S.parse(str(p)) == p
  assert len(text) < 160  # fits in one flag


def test_every_builder_has_a_canonical_round_trip_case():
  names = {t.split('(')[0] for t in CANONICAL}
  aliases = {'fixed', 'triangular2', 'exp_range', 'sequence'}
  assert set(S._policy.REGISTRY) - aliases == names


@pytest.mark.parametrize(
  'policy',
  [
    S.multistep(0.1, milestones=[60, 120, 160], gamma=0.2),
    S.triangular2(0.01, high=0.1, length=5),
    S.exp_range(0.01, high=0.1, length=5, gamma=0.99),
    S.warmup(S.onecycle(0.5, length=100), length=3, start=0.05),
    S.cosine(1e-3, length=90.0),
    S.polynomial(0.1, length=10, end=-0.25),
  ],
  ids=str,
)
def test_built_policies_round_trip(policy):
  again = S.parse(str(policy))
  assert again == policy and str(again) == str(policy)
  ts = np.arange(0, 40)
  np.testing.assert_array_equal(np.asarray(again(ts)), np.asarray(policy(ts)))


def test_non_canonical_text_is_accepted_and_normalised():
  assert str(S.parse(' step( 0.1 , length = 30.0 , gamma=0.1 ) ')) == (
    'step(0.1,length=30)'
  )
  assert str(S.parse('fixed(1.0)')) == 'constant(1)'
  assert str(S.parse('triangular2(0.01,high=0.1,length=5)')) == (
    'triangular(0.01,high=0.1,length=5,amplitude=half)'
  )
  assert str(S.parse('constant(value=2.5e-3)')) == 'constant(0.0025)'
  assert str(S.parse('sequence(constant(1)/constant(2),boundaries=4)')) == (
    'join(constant(1)/constant(2),boundaries=4)'
  )


@pytest.mark.parametrize(
  'text,message',
  [
    ('foo(1)', r"unknown policy 'foo'; known policies: .*cosine.*step"),
    ('step(0.1)', r"step\(\): missing argument 'length'"),
    ('step(0.1,length=3,gama=0.1)', r"unknown argument 'gama'; its arguments"),
    ('step(0.1,length=0)', r'step\(\): length=0 must be > 0'),
    ('step(0.1,length=3', r"expected '\)' at the end"),
    ('step(0.1,length=3) x', r"unexpected 'x' at column 19"),
    ('step(0.1,length=3,length=4)', r"argument 'length' given twice"),
    ('step', r'expected "\(" after'),
    ('', r'empty policy text'),
    ('step(0.1;length=3)', r'at column 8'),
    ('warmup(0.1,length=5)', r'policy=0.1 must be a Policy'),
    ('cosine(0.1,length=10,end=abc)', r"end='abc' must be a number"),
    ('sine(0,high=1,length=2,phase=left)', r"phase='left' must be one of"),
  ],
)
def test_errors_name_the_problem(text, message):
  with pytest.raises((ValueError, TypeError), match=message):
    S.parse(text)
