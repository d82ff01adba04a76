"""ngebm_jax: Non-Generative Energy-Based Models (NG-EBM), JEM and their evaluation in JAX.

The public surface is pure functions of arrays (no Flax, no config, no global state):

    import ngebm_jax as ng
    loss, aux = ng.ngebm_loss(apply_fn, params, x, y)   # apply_fn(params, x) -> logits

Models, data, the trainer and the evaluators live in the subpackages `ngebm_jax.models`,
`ngebm_jax.data`, `ngebm_jax.training`, `ngebm_jax.evaluation` and `ngebm_jax.salience`.
"""

from ngebm_jax.energy import approximate_mass
from ngebm_jax.energy import class_energy
from ngebm_jax.energy import energy
from ngebm_jax.energy import log_density
from ngebm_jax.energy import log_density_input_grad
from ngebm_jax.objectives import cross_entropy_loss
from ngebm_jax.objectives import global_mean
from ngebm_jax.objectives import ngebm_loss

__version__ = "0.1.0"

__all__ = [
    "approximate_mass",
    "class_energy",
    "cross_entropy_loss",
    "energy",
    "global_mean",
    "log_density",
    "log_density_input_grad",
    "ngebm_loss",
]
