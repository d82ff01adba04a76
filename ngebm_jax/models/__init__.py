"""Classifiers `f(x) -> logits` as Flax NNX modules, exposed as pure functions.

`create_model` (or `from_config`, from `config.model`) returns `(ModelFns, params)`:
`apply_fn(params, x)` and the feature-map / head split that class activation maps need, with
`params` a plain dict. See `pure` for the contract,
`wide_resnet` for the reference WRN-28-10 of NG-EBM and JEM, `small_cnn` for the CPU model.
"""

from ngebm_jax.models.pure import MODEL_NAMES
from ngebm_jax.models.pure import ModelFns
from ngebm_jax.models.pure import count_params
from ngebm_jax.models.pure import create_model
from ngebm_jax.models.pure import from_config
from ngebm_jax.models.pure import model_arguments
from ngebm_jax.models.pure import pure_functions
from ngebm_jax.models.small_cnn import SmallCNN
from ngebm_jax.models.wide_resnet import WideResNet

__all__ = ["MODEL_NAMES", "ModelFns", "SmallCNN", "WideResNet", "count_params", "create_model",
           "from_config", "model_arguments", "pure_functions"]
