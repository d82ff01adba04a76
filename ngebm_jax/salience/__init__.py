"""Salience at scale: Grad-CAM and the five measures of Explain2Me (arXiv 2303.11969).

```python
from ngebm_jax import salience
maps = salience.grad_cam_batched(model_fns, params, x)          # [N, h, w] in [0, 1]
salience.entropy_measure(maps)["mean"]                           # (a)
salience.out_of_set_measure(model_fns, params, x, key)           # (b)
salience.equivariance_measure(model_fns, params, x)["overall"]   # (c)
salience.stability_measure(np.stack([maps_run1, maps_run2]))     # (d)
salience.degradation_measure(model_fns, params, x, y, mode="object")  # (e)
```
(b) and (e) follow the authors' released code by default; `salience.get_variant("ours")` names
the other choices (`ngebm_jax.salience.variants`).
`model_fns` has `features_fn(params, x) -> A [B, h, w, C]` and `head_fn(params, A) -> logits`
(the ModelFns of `ngebm_jax.models`), or is a `(features_fn, head_fn)` tuple.
`ngebm_jax.salience.model_salience` runs every measure on a model, `ngebm_jax.salience.report`
writes a report across models
(`python -m experiments.salience`).
"""

from ngebm_jax.salience.degrade import blur_schedule
from ngebm_jax.salience.degrade import degrade
from ngebm_jax.salience.degrade import degradation_levels
from ngebm_jax.salience.degrade import gaussian_blur
from ngebm_jax.salience.degrade import octave_matched_sigma
from ngebm_jax.salience.degrade import salience_guided_blur
from ngebm_jax.salience.grad_cam import grad_cam
from ngebm_jax.salience.grad_cam import grad_cam_and_logits
from ngebm_jax.salience.grad_cam import grad_cam_batched
from ngebm_jax.salience.grad_cam import to_uint8
from ngebm_jax.salience.grad_cam import upsample
from ngebm_jax.salience.measures import degradation_curve
from ngebm_jax.salience.measures import degradation_measure
from ngebm_jax.salience.measures import entropy_measure
from ngebm_jax.salience.measures import equivariance_measure
from ngebm_jax.salience.measures import map_entropy
from ngebm_jax.salience.measures import OUT_OF_SET_AMOUNTS
from ngebm_jax.salience.measures import out_of_set_measure
from ngebm_jax.salience.measures import stability_measure
from ngebm_jax.salience.ssim import ssim
from ngebm_jax.salience.transforms import equivariance_transforms
from ngebm_jax.salience.transforms import salt_and_pepper
from ngebm_jax.salience.transforms import salt_and_pepper_from_uniforms
from ngebm_jax.salience.variants import get_variant
from ngebm_jax.salience.variants import Variant

__all__ = [
    "OUT_OF_SET_AMOUNTS",
    "Variant",
    "blur_schedule",
    "degradation_curve",
    "degradation_levels",
    "degradation_measure",
    "degrade",
    "entropy_measure",
    "equivariance_measure",
    "equivariance_transforms",
    "gaussian_blur",
    "get_variant",
    "grad_cam",
    "grad_cam_and_logits",
    "grad_cam_batched",
    "map_entropy",
    "octave_matched_sigma",
    "out_of_set_measure",
    "salience_guided_blur",
    "salt_and_pepper",
    "salt_and_pepper_from_uniforms",
    "ssim",
    "stability_measure",
    "to_uint8",
    "upsample",
]
