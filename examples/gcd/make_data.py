"""Write train.jsonl and test.jsonl: greatest common divisors by Euclid's algorithm, worked.

    python examples/gcd/make_data.py            # 16,000 training rows, 500 held-out, seed 0

Each row: ``prompt`` (``gcd(84,36)=``), the SFT ``completion`` with every division step worked
(``<think>84=2*36+12;36=3*12+0</think><answer>12</answer>``) and ``answer``, the column the task
reward reads. The pairs are 10 ≤ b < a ≤ 199; the held-out pairs are disjoint from the training
pairs. A task of another kind than the embedded arithmetic one: an algorithm whose length depends
on its input (1–7 steps), with multiplication and division with remainder in every step.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path


def worked(a: int, b: int) -> str:
    """Euclid's algorithm on ``a > b``, one ``a=q*b+r`` per step.

    >>> worked(84, 36)
    '<think>84=2*36+12;36=3*12+0</think><answer>12</answer>'
    """
    steps = []
    while b:
        q, r = divmod(a, b)
        steps.append(f"{a}={q}*{b}+{r}")
        a, b = b, r
    return f"<think>{';'.join(steps)}</think><answer>{a}</answer>"


def rows(train: int = 16000, test: int = 500, seed: int = 0, high: int = 199) -> tuple[list, list]:
    pairs = [(a, b) for a in range(11, high + 1) for b in range(10, a)]
    random.Random(seed).shuffle(pairs)
    if train + test > len(pairs):
        raise SystemExit(f"error: only {len(pairs)} pairs with a <= {high}; ask for fewer rows")
    out = [
        {"prompt": f"gcd({a},{b})=", "completion": worked(a, b), "answer": str(math.gcd(a, b))}
        for a, b in pairs[: train + test]
    ]
    return out[:train], out[train:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "data"), help="folder for the two files")
    ap.add_argument("--train", type=int, default=16000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in zip(("train", "test"), rows(a.train, a.test, a.seed)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    print(f"wrote {out}/train.jsonl ({a.train} rows) and {out}/test.jsonl ({a.test} rows)")


if __name__ == "__main__":
    main()
