"""Task templates (``needle``, ``question``, ``answer``, distractor ``variants``): which ``{fields}`` they use.

Templates are filled with ``str.format``; ``{value}`` is the trial's drawn value and ``{key}`` its drawn key (a task
with a ``key:`` block). Format specs are allowed but bounded, so a template cannot expand to gigabytes.
"""

from __future__ import annotations

import re
import string

# widest padding or precision a template's format spec may ask for ("{value:>999999999}" would fill GBs)
MAX_FORMAT_WIDTH = 200
TEMPLATE_NAMES = ("value", "key")


def template_fields(text: str, allowed: tuple[str, ...] = TEMPLATE_NAMES) -> set[str]:
    """Names of the ``{fields}`` in a template; raise ValueError unless they are all in ``allowed``."""
    try:
        fields = [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid template ({exc}); write {{{{ and }}}} for literal braces") from None
    names = {name for name, _ in fields}
    for _, spec in fields:
        _check_format_spec(text, spec)
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        shown = " and ".join(f"{{{name}}}" for name in allowed)
        raise ValueError(f"{text!r} uses {{{unknown[0]}}}; only {shown} are available (write {{{{ for a brace)")
    try:  # conversions and format specs ("{value!x}", "{value:d}") fail only when filled: try it now
        text.format(value="0", key="k")
    except (ValueError, IndexError, KeyError, AttributeError) as exc:
        raise ValueError(f"{text!r} cannot be filled in ({exc}); write plain {{value}}") from None
    return names


def _check_format_spec(text: str, spec: str) -> None:
    """Refuse format specs whose expansion is unbounded: a nested ``{field}`` or a width above the limit."""
    if "{" in spec:  # the width would come from the value itself (up to 40 digits)
        raise ValueError(f"{text!r} nests a field in a format spec; write plain {{value}}")
    widths = [int(digits) for digits in re.findall(r"\d+", spec)]
    if widths and max(widths) > MAX_FORMAT_WIDTH:
        raise ValueError(
            f"{text!r} asks for a width or precision of {max(widths)}; use at most {MAX_FORMAT_WIDTH} (or plain {{value}})"
        )
