"""The bundled `digits` TFDS dataset (scikit-learn's UCI handwritten digits).

A package of its own because TFDS locates a builder's resources through its
package.
"""

from lrjax.data.digits._builder import NUM_TEST as NUM_TEST
from lrjax.data.digits._builder import NUM_TRAIN as NUM_TRAIN
from lrjax.data.digits._builder import Digits as Digits
from lrjax.data.digits._builder import split_indices as split_indices

__all__ = ['NUM_TEST', 'NUM_TRAIN', 'Digits', 'split_indices']
