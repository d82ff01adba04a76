"""Writing results: JSON numbers, Markdown tables and PNG figures, local or remote.

Every report of the package (evaluation, salience, focus and calibration studies, benchmark)
writes its files through these helpers, so they share one policy:

- JSON is strict: NumPy and JAX scalars and arrays become Python numbers and lists, and a
  non-finite float (a diverged loss, an undefined AUROC) becomes `null`, never the `NaN` token
  that other JSON readers reject.
- Paths go through `etils.epath`, so `gs://bucket/run` and other URIs reach their storage
  instead of a local folder named `gs:`.
- Figures are `matplotlib.figure.Figure` objects drawn on the Agg canvas, never through pyplot,
  so no global matplotlib state changes and no display is needed.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

from etils import epath
import numpy as np

PathLike = str | os.PathLike


def to_jsonable(value: Any) -> Any:
  """NumPy / JAX scalars and arrays to Python; non-finite floats to `None` (strict JSON)."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (str, bool)) or value is None:
    return value
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  if hasattr(value, "tolist"):  # arrays
    return to_jsonable(np.asarray(value).tolist())
  return str(value)


def dumps(value: Any, *, indent: int | None = 2) -> str:
  """`value` as strict JSON text (see `to_jsonable`), keys sorted."""
  return json.dumps(to_jsonable(value), indent=indent, sort_keys=True, allow_nan=False)


def write_json(path: PathLike, value: Any) -> epath.Path:
  """Writes `value` as strict JSON to `path` (parents created); returns the path."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(dumps(value) + "\n")
  return path


def read_json(path: PathLike) -> Any:
  return json.loads(epath.Path(path).read_text())


def write_text(path: PathLike, text: str) -> epath.Path:
  """Writes `text` to `path` (parents created); returns the path."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]],
                   align: Sequence[str] | None = None) -> list[str]:
  """A Markdown table as lines; `|` inside a cell (as in "max p(y|x)") is escaped.

  `align` gives one of "l", "r" per column (default: left).
  """
  def row(cells):
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
  marks = {"l": " --- |", "r": " ---: |"}
  rule = "|" + "".join(marks[a] for a in (align or ["l"] * len(header)))
  return [row(header), rule] + [row(r) for r in rows]


def fmt(value: Any, spec: str = ".3f", missing: str = "–") -> str:
  """`format(value, spec)`, or `missing` for None and non-finite numbers."""
  if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
    return missing
  return format(value, spec)


def mean_sd(stat: Mapping | None, scale: float = 1.0, digits: int = 2, *,
            signed: bool = False) -> str:
  """`"mean ± sd"` of an aggregate `{"mean", "sd"}` times `scale` (no sd: the mean alone), or
  `"–"` when missing."""
  if not stat or stat.get("mean") is None:
    return "–"
  text = f"{scale * stat['mean']:{'+' if signed else ''}.{digits}f}"
  return text + (f" ± {scale * stat['sd']:.{digits}f}" if stat.get("sd") is not None else "")


def interval(d: Mapping | None, scale: float = 1.0, digits: int = 2) -> str:
  """`"mean [low, high]"` (signed) of a paired difference times `scale` (no interval: the mean
  alone), or `"–"` when missing."""
  if not d:
    return "–"
  text = f"{scale * d['mean']:+.{digits}f}"
  if d.get("low") is not None:
    text += f" [{scale * d['low']:+.{digits}f}, {scale * d['high']:+.{digits}f}]"
  return text


def pct(value: Any, digits: int = 2, missing: str = "–") -> str:
  """A fraction as a percentage (`0.1234` -> `"12.34%"`), or `missing`."""
  text = fmt(None if value is None else 100 * value, f".{digits}f", missing)
  return text if text == missing else text + "%"


def new_figure(ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] = (6.0, 4.0),
               squeeze: bool = True, **kwargs):
  """`(fig, axes)`: a Figure on the Agg canvas with a grid of axes, no pyplot involved.

  `size` is the size of one panel in inches; `kwargs` go to `Figure.subplots`.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
  return fig, axes


def save_figure(fig, path: PathLike, *, dpi: int = 100) -> epath.Path:
  """Writes `fig` as a PNG to `path` (parents created); returns the path.

  A figure with a layout engine (`new_figure`'s constrained layout) is saved as laid out: a tight
  bounding box on top would draw it twice (once to measure) for the same margins. Only a figure
  without one is trimmed to a tight box, so that no label is cut off.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
    FigureCanvasAgg(fig)
  with path.open("wb") as f:
    tight = "tight" if fig.get_layout_engine() is None else None
    fig.savefig(f, dpi=dpi, bbox_inches=tight, format="png")
  return path
