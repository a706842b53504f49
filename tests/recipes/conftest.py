import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from micro import train_micro_stages  # noqa: E402


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """The micro pretrain, SFT, PPO and eval runs, trained once for every stage test that reads them."""
    return train_micro_stages(tmp_path_factory.mktemp("stages"))
