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
from ngebm_jax.objectives import penalized_examples
from ngebm_jax.calibration_objectives import focal_loss
from ngebm_jax.calibration_objectives import label_smoothing_loss
from ngebm_jax.sgld import ReplayBuffer
from ngebm_jax.sgld import init_replay_buffer
from ngebm_jax.sgld import sgld_ebm_loss
from ngebm_jax.sgld import sgld_ebm_loss_from_samples
from ngebm_jax.sgld import sgld_sample
from ngebm_jax.focus import class_activation_map
from ngebm_jax.focus import cyborg_loss
from ngebm_jax.focus import focus_loss
from ngebm_jax.focus import human_map_entropy
from ngebm_jax.focus import human_salience_mse
from ngebm_jax.focus import spatial_entropy
from ngebm_jax.evaluation.calibration import brier_score
from ngebm_jax.evaluation.calibration import calibration_bins
from ngebm_jax.evaluation.calibration import expected_calibration_error
from ngebm_jax.evaluation.calibration import negative_log_likelihood
from ngebm_jax.evaluation.ood import fpr_at_tpr
from ngebm_jax.evaluation.ood import ood_scores
from ngebm_jax.evaluation.ood import ood_metrics
from ngebm_jax.evaluation.robustness import pgd_attack
from ngebm_jax.evaluation.robustness import robust_accuracy

__version__ = "0.1.0"

__all__ = [
    # Energies (JEM eq. 3; §5.2).
    "approximate_mass",
    "class_energy",
    "energy",
    "log_density",
    "log_density_input_grad",
    # Objectives.
    "cross_entropy_loss",
    "global_mean",
    "ngebm_loss",
    "penalized_examples",
    "sgld_ebm_loss",
    "sgld_ebm_loss_from_samples",
    # The calibration peers: label smoothing, focal loss (FL-gamma, FLSD-53).
    "focal_loss",
    "label_smoothing_loss",
    # SGLD and the replay buffer.
    "ReplayBuffer",
    "init_replay_buffer",
    "sgld_sample",
    # Focus losses (CYBORG; arXiv 2303.00818).
    "class_activation_map",
    "cyborg_loss",
    "focus_loss",
    "human_map_entropy",
    "human_salience_mse",
    "spatial_entropy",
    # Evaluation metrics and attacks.
    "brier_score",
    "calibration_bins",
    "expected_calibration_error",
    "fpr_at_tpr",
    "negative_log_likelihood",
    "ood_metrics",
    "ood_scores",
    "pgd_attack",
    "robust_accuracy",
]
