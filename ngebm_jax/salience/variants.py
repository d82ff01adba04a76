"""Named sets of the options of measures (a), (b) and (e): which steps produced a number.

Explain2Me's released code (`Measures/`, `Salience/scripts/`) differs from our first reading of the
paper (arXiv 2303.11969) in a few steps of measures (a), (b) and (e). Each difference is an option
of the measure function; a `Variant` fixes all of them, and reports print the variant's name and
fields next to the numbers it produced.

Fields (the authors' choice first):

- `quantization` (a, and the entropies of b): how float maps become 8-bit before their
  histogram, "floor" (the authors: torchvision's `mul(255).byte()`) or "nearest".
- `noise` (b): "channel", scikit-image's salt and pepper, value by value (the authors), or
  "pixel", whole black or white pixels (`transforms.salt_and_pepper`).
- `map_scaling` (e): "max", the smoothed map divided by its maximum (the authors), or "min_max".
- `upsample` (e): "bicubic" (the authors, PIL) or "bilinear", for the map that guides the blur
  and for the two maps that SSIM compares.
- `boundary` (e): "reflect" (the authors, scipy's default) or "nearest", for the smoothing of
  the map and the blur of the image.
- `degraded_cam_class` (e): the class of the degraded image's Grad-CAM, "degraded" (its own
  prediction; the authors' code computes every map for the predicted class of its image) or
  "original" (the class predicted on the clean image: the same question asked of both images).
- `schedule` (e): how the authors' 224-pixel blur sigmas are carried to the image side,
  "scaled", "octaves" or "literal" (`degrade.blur_schedule`); the authors only ran 224 px, where
  the three coincide.

Presets: "authors" (every step as the released code, sigmas scaled to the side), "ours" (the
first implementation: nearest rounding, pixel noise, min-max, bilinear, nearest, original class,
scaled), and "default", the defaults of the measure functions: the authors' steps, since no
alternative is clearly better and the measures are meant to be comparable with the paper, with
the "octaves" schedule, because at 32 px the scaled schedule leaves most levels unblurred (see
`ngebm_jax/salience/degrade.py`).
"""

from __future__ import annotations

import dataclasses

from ngebm_jax.salience.degrade import BOUNDARIES
from ngebm_jax.salience.degrade import DEFAULT_SCHEDULE
from ngebm_jax.salience.degrade import MAP_SCALINGS
from ngebm_jax.salience.degrade import SCHEDULES
from ngebm_jax.salience.grad_cam import ROUNDINGS
from ngebm_jax.salience.grad_cam import UPSAMPLE_METHODS

NOISES = ("channel", "pixel")
DEGRADED_CAM_CLASSES = ("degraded", "original")


@dataclasses.dataclass(frozen=True)
class Variant:
  """One choice for each step of (b) and (e) where the authors' code and ours differ."""
  name: str
  quantization: str = "floor"
  noise: str = "channel"
  map_scaling: str = "max"
  upsample: str = "bicubic"
  boundary: str = "reflect"
  degraded_cam_class: str = "degraded"
  schedule: str = DEFAULT_SCHEDULE

  def __post_init__(self):
    for field, choices in (("quantization", ROUNDINGS), ("noise", NOISES),
                           ("map_scaling", MAP_SCALINGS),
                           ("upsample", UPSAMPLE_METHODS), ("boundary", BOUNDARIES),
                           ("degraded_cam_class", DEGRADED_CAM_CLASSES),
                           ("schedule", SCHEDULES)):
      value = getattr(self, field)
      if value not in choices:
        raise ValueError(f"Variant.{field} must be one of {choices}; got {value!r}.")

  def options(self) -> dict:
    """The fields without the name (what `salience.json` records for the variant)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}

  def entropy_options(self) -> dict:
    """Keyword arguments of `entropy_measure`."""
    return {"rounding": self.quantization}

  def noise_options(self) -> dict:
    """Keyword arguments of `out_of_set_measure`."""
    return {"per_channel": self.noise == "channel", "rounding": self.quantization}

  def degradation_options(self) -> dict:
    """Keyword arguments of `degradation_measure` (all but the mode and the sigma factor)."""
    return {"schedule": self.schedule, "map_scaling": self.map_scaling,
            "upsample_method": self.upsample, "boundary": self.boundary,
            "degraded_cam_class": self.degraded_cam_class}

  def describe(self) -> str:
    """One line for a report: `name: noise=..., map_scaling=..., ...`."""
    return f"{self.name}: " + ", ".join(f"{k}={v}" for k, v in self.options().items())


PRESETS = {
    "default": Variant("default"),
    "authors": Variant("authors", schedule="scaled"),
    "ours": Variant("ours", quantization="nearest", noise="pixel", map_scaling="min_max",
                    upsample="bilinear", boundary="nearest", degraded_cam_class="original",
                    schedule="scaled"),
}


def get_variant(name: str) -> Variant:
  """A preset by name, or `PRESET:SCHEDULE` for a preset with another blur schedule."""
  preset, _, schedule = name.partition(":")
  if preset not in PRESETS:
    raise ValueError(f"Unknown salience variant {name!r}; choose one of {sorted(PRESETS)}, "
                     f"optionally followed by :SCHEDULE with SCHEDULE in {SCHEDULES}.")
  variant = PRESETS[preset]
  if schedule:
    variant = dataclasses.replace(variant, schedule=schedule)
  return dataclasses.replace(variant, name=name)
