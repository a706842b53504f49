"""The model factory: a LoRA adapter is added without warnings the user can do nothing about."""

import warnings

from r1rl.config import LoraConfigModel
from r1rl.models.factory import add_lora, build_config, build_model


def test_adding_lora_prints_no_future_warning():
    model = build_model(build_config("micro", 300, pad_token_id=1, eos_token_id=0), seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add_lora(model, LoraConfigModel(r=4, alpha=8))
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
