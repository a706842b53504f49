"""Reward plug-ins for the unit-conversion example: plain functions with TRL's reward signature.

The dataset's columns arrive as keyword arguments, one value per completion: ``value``,
``factor`` and ``unit`` here. Name them in the signature and the run is refused before training
if the data lacks one.
"""

import re

ANSWER = re.compile(r"^\s*(-?\d+) (\w+)\s*$")


def answer_format(prompts, completions, unit, **columns):
    """1.0 when the completion is ``<integer> <unit>`` in the unit the row asks for.

    >>> answer_format(["3 km in m:"] * 3, [" 3000 m", " 3000 km", "three thousand"], unit=["m"] * 3)
    [1.0, 0.0, 0.0]
    """
    out = []
    for c, u in zip(completions, unit):
        m = ANSWER.match(c)
        out.append(1.0 if m and m.group(2) == u else 0.0)
    return out


def correct_value(prompts, completions, value, factor, **columns):
    """1.0 when the number is ``value * factor``.

    >>> correct_value(["3 km in m:"] * 2, [" 3000 m", " 300 m"], value=[3, 3], factor=[1000, 1000])
    [1.0, 0.0]
    """
    out = []
    for c, v, f in zip(completions, value, factor):
        m = ANSWER.match(c)
        out.append(1.0 if m and int(m.group(1)) == v * f else 0.0)
    return out
