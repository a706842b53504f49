"""Optional experiment trackers (TensorBoard, W&B, Trackio, MLflow, ...) through ``accelerate``.

``report_to: [tensorboard]`` in any stage recipe mirrors every ``metrics.jsonl`` row to the
trackers; ``metrics.jsonl`` stays the source of truth. Tracker files go to
``<output_dir>/trackers/``; W&B and friends use their own login and environment variables.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from r1rl.errors import UserError


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"a/b": scalar}`` (trackers take flat hyper-parameters)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "/"))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = "null" if v is None else v
        else:
            out[key] = str(v)
    return out


class Trackers:
    def __init__(self, report_to: list[str], path: Path, project: str, config: dict[str, Any]) -> None:
        from accelerate import Accelerator

        try:
            self.accelerator = Accelerator(
                log_with=list(report_to), project_dir=str(path / "trackers"), cpu=True
            )
            self.accelerator.init_trackers(project, config=_flat(config))
        except (ImportError, ValueError, ModuleNotFoundError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"report_to {list(report_to)}: {first} (pip install the tracker's package)"
            ) from None
        self._open = True
        atexit.register(self.close)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        scalars = {
            k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        self.accelerator.log(scalars, step=step)

    def close(self) -> None:
        if self._open:
            self._open = False
            for tracker in self.accelerator.trackers:  # not end_training(): under a launcher that
                tracker.finish()  # would also tear down the process group the stage still uses
