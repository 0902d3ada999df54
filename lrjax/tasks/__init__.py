"""What to train: named tasks built from the model zoo and the datasets.

The trainer (:mod:`lrjax.train`) trains any :class:`lrjax.train.Task`; this
package builds the ones lrjax ships, so that neither the trainer nor a
config names models or datasets:

- :func:`image_classification`: a model of :mod:`lrjax.models` ('mlp',
  'cnn', 'wrn16_4', ...) on 'digits' (bundled), a prepared TFDS dataset or
  'synthetic' images;
- :func:`classification`: any model on any labelled images;
- :func:`language_model`: :class:`lrjax.lm.Transformer` on byte-token
  sequences (:func:`lrjax.data.load_text`);
- :func:`register` / :func:`get`: a name for a builder of one's own.
"""

from lrjax.tasks._classification import classification as classification
from lrjax.tasks._classification import (
  classification_eval as classification_eval,
)
from lrjax.tasks._classification import (
  classification_loss as classification_loss,
)
from lrjax.tasks._classification import (
  image_classification as image_classification,
)
from lrjax.tasks._lm import language_model as language_model
from lrjax.tasks._lm import lm_train_loss as lm_train_loss
from lrjax.tasks._registry import get as get
from lrjax.tasks._registry import register as register
from lrjax.tasks._registry import registered as registered

__all__ = [
  'classification',
  'classification_eval',
  'classification_loss',
  'get',
  'image_classification',
  'language_model',
  'lm_train_loss',
  'register',
  'registered',
]
