import os
from pathlib import Path

import pytest
import torch

MICRO = Path(__file__).parents[1] / "recipes" / "configs" / "micro"

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def micro_pretrained(tmp_path_factory):
    """``final/`` of the micro pretrain recipe, trained once per session; treat it as read-only."""
    from r1rl.config import PretrainConfig, load_config
    from r1rl.run.stages import STAGES

    out = tmp_path_factory.mktemp("micro") / "pretrain"
    cfg = load_config(PretrainConfig, MICRO / "pretrain.yaml", [f"output_dir={out}"])
    return STAGES["pretrain"](cfg).final
