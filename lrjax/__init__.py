"""lrjax: co-schedule the learning rate and the batch size of JAX training."""

__version__ = '0.1.0'
