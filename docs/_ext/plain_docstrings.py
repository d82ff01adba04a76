"""Sphinx extension: render the project's plain-text Google-style docstrings as valid reST.

The docstrings of `ngebm_jax` are written to be read with `help()`: Google sections (`Args:`,
`Returns:`, ...) for napoleon, and free text in which an indented block is preformatted text (a
formula, a table, a directory layout, a code snippet), a list may follow its introducing line
directly, and code may be fenced with triple backticks. reST reads the same text differently
("Unexpected indentation", `|x|` as a substitution). Before napoleon runs, this extension
rewrites the free text only (never the body of a Google section):

- an indented block (deeper than the paragraph or list item before it) becomes a literal block:
  the introducing line's final `:` becomes `::`, or a `::` paragraph is inserted; an indented
  bulleted list becomes a list; a paragraph whose lines hang below its first (a plain-text table)
  becomes a literal block as a whole;
- a blank line is inserted where a bulleted list starts or ends without one;
- a fenced block (triple backticks, optional language) becomes a `code-block` directive;
- inline code followed by a letter (a plural, `` `x`s ``) gets reST's escaped space.

Text that is already reST (directives, `::` literal blocks) is left as it is.
"""

from __future__ import annotations

import re

SECTION = re.compile(
    r"^(Args|Arguments|Attributes|Example|Examples|Keyword Args|Keyword Arguments|Methods|Note|"
    r"Notes|Other Parameters|Parameters|Raises|References|Return|Returns|See Also|Todo|Warning|"
    r"Warnings|Warns|Yield|Yields)\s*:\s*$")
BULLET = re.compile(r"^(?:[-*+]|\d+[.)])\s+")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
# `name`s (a plural after inline code): reST needs an escaped space between the two.
CODE_THEN_LETTER = re.compile(r"(`[^`\s][^`]*`)(?=[A-Za-z0-9])")


def _text(line: str) -> str:
  return CODE_THEN_LETTER.sub(r"\1\\ ", line)


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip(" "))


def _blank_before(out: list[str]) -> None:
  if out and out[-1].strip():
    out.append("")


def convert(lines: list[str]) -> list[str]:
  """The reST form of a (dedented) plain-text docstring, as a new list of lines."""
  out: list[str] = []
  base = None  # indent of the text of the current paragraph or list item
  in_item = False  # whether `base` belongs to a list item
  i, n = 0, len(lines)
  while i < n:
    line = lines[i]
    text = line.strip()
    if not text:
      out.append(line)
      i += 1
      continue
    ind = _indent(line)

    fence = FENCE.match(text)
    if fence:  # ```lang ... ``` -> .. code-block:: lang
      end = i + 1
      while end < n and not FENCE.match(lines[end].strip()):
        end += 1
      _blank_before(out)
      out += [" " * ind + f".. code-block:: {fence.group(1) or 'text'}", ""]
      out += ["   " + l if l.strip() else "" for l in lines[i + 1:end]]
      out.append("")
      i = end + 1
      continue

    if ind == 0 and SECTION.match(text):  # a Google section: napoleon's, copied verbatim
      out.append(line)
      i += 1
      while i < n and (not lines[i].strip() or _indent(lines[i]) > 0):
        out.append(_text(lines[i]))
        i += 1
      base, in_item = None, False
      continue

    if text.startswith(".. ") or text.endswith("::"):  # explicit reST block: keep it
      out.append(line)
      i += 1
      while i < n and (not lines[i].strip() or _indent(lines[i]) > ind):
        out.append(lines[i])
        i += 1
      base, in_item = ind, False
      continue

    previous_is_text = bool(out) and bool(out[-1].strip())
    if base is not None and ind > base:  # an indented block
      end = i
      while end < n and (not lines[end].strip() or _indent(lines[end]) > base):
        end += 1
      while not lines[end - 1].strip():
        end -= 1
      block = lines[i:end]
      if previous_is_text and not in_item and not out[-1].rstrip().endswith(":"):
        # A hanging indent under a line (a plain-text table or definition list): the whole
        # paragraph is preformatted.
        start = len(out)
        while start > 0 and out[start - 1].strip():
          start -= 1
        while end < n and lines[end].strip():  # down to the paragraph's end
          end += 1
        block = out[start:] + lines[i:end]
        del out[start:]
        _blank_before(out)
        out += [" " * base + "::", ""]
        out += ["  " + l if l.strip() else "" for l in block]
      elif BULLET.match(text):  # an indented list: a list at the paragraph's level
        _blank_before(out)
        out += [" " * base + l if l.strip() else "" for l in convert([l[ind:] for l in block])]
      else:  # preformatted text: a literal block
        last = max((k for k in range(len(out)) if out[k].strip()), default=None)
        if last is not None and out[last].rstrip().endswith(":"):
          out[last] = out[last].rstrip() + ":"
        else:
          _blank_before(out)
          out.append(" " * base + "::")
        _blank_before(out)
        out += block
      if end < n and lines[end].strip():
        out.append("")
      i = end
      continue

    bullet = BULLET.match(text)
    if bullet:
      if previous_is_text and not in_item:
        out.append("")  # a list needs a blank line after the paragraph that introduces it
      base, in_item = ind + bullet.end(), True
    elif in_item and ind < base:
      if previous_is_text:
        out.append("")  # ... and after its last item
      base, in_item = ind, False
    elif base is None or not previous_is_text:
      base, in_item = ind, in_item and ind == base
    out.append(_text(line))
    i += 1
  return out


def _process_docstring(app, what, name, obj, options, lines):  # pylint: disable=unused-argument
  lines[:] = convert(lines)


def setup(app):
  # Napoleon converts Google sections at the default priority 500; run before it.
  app.connect("autodoc-process-docstring", _process_docstring, priority=400)
  return {"parallel_read_safe": True, "parallel_write_safe": True}
