"""Write prompts.jsonl: every conversion of 1–99 of five units, with the columns the rewards read.

    python examples/unit_conversion/make_data.py        # 495 rows, shuffled with seed 0

Each row: ``prompt``, the SFT ``completion``, and three columns the rewards receive as keyword
arguments: ``value`` (the quantity asked about), ``factor`` (how many target units make one
source unit) and ``unit`` (the unit the answer must be written in).
"""

import json
import random
from pathlib import Path

CONVERSIONS = [("km", "m", 1000), ("m", "cm", 100), ("cm", "mm", 10), ("kg", "g", 1000), ("h", "min", 60)]


def rows(seed: int = 0) -> list[dict]:
    out = [
        {"prompt": f"{value} {src} in {dst}:", "completion": f" {value * factor} {dst}",
         "value": value, "factor": factor, "unit": dst}
        for src, dst, factor in CONVERSIONS
        for value in range(1, 100)
    ]  # fmt: skip
    random.Random(seed).shuffle(out)
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("prompts.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    print(f"wrote {path}")
