"""The focus task's evaluator: detection AUROC and CAM statistics (`evaluation.focus_task`).

For runs on the procedural authentic-vs-generated task (`config.dataset.name = "focus_task"`):
it needs the model's CAM functions (`EvalInputs.model`) and the split's `human_map`,
`artifact_mask` and `kind` (`EvalInputs.extras`), which `evaluation.entry.read_eval_data` gives
for that dataset.
"""

from __future__ import annotations

from ngebm_jax.evaluation import focus_task
from ngebm_jax.evaluation.inputs import EvalInputs

NEEDS = ("human_map", "artifact_mask", "kind")


def evaluate(inputs: EvalInputs, output_dir: str | None) -> dict:
  """`focus_task.split_figures` of `inputs.images` (no plots)."""
  del output_dir  # no plots
  missing = [k for k in NEEDS if k not in inputs.extras]
  if inputs.model is None or missing:
    raise ValueError(
        "the focus_detection evaluator needs the model's functions (EvalInputs.model) and the "
        f"focus task's per-image arrays {list(NEEDS)} (EvalInputs.extras); missing: "
        f"{(['model'] if inputs.model is None else []) + missing}. It evaluates runs with "
        "config.dataset.name='focus_task'.")
  return focus_task.split_figures(inputs.model, inputs.params, inputs.images,
                                  {"label": inputs.labels, **inputs.extras},
                                  batch_size=inputs.options.batch_size)


def plan(inputs: EvalInputs) -> dict:
  return dict(images=int(inputs.images.shape[0]))
