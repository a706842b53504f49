"""Every MoE architecture r1rl trains, as a tiny random copy (:data:`r1rl.models.architectures.TINY`):
LoRA SFT, then two PPO steps with the router's balance loss, the routed experts' weights trained in both.

DBRX is the one refusal: PEFT cannot reach its experts (:data:`r1rl.models.targets.UNREACHABLE`), so
its SFT adapts attention only and its PPO fine-tunes the whole model.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from micro import micro_config
from safetensors.torch import load_file

from r1rl.config import PPOConfig, SFTConfig
from r1rl.errors import UserError
from r1rl.models.architectures import TINY, save_tiny
from r1rl.models.factory import load_merged, load_tokenizer
from r1rl.models.targets import find_targets
from r1rl.run.stages import STAGES

REWARD = Path(__file__).parent / "spread.py"
SFT = {"steps": 2, "batch_size": 4, "num_examples": 8, "log.every": 1}
PPO = {
    "steps": 2, "rollout.prompts_per_step": 2, "rollout.samples_per_prompt": 4, "rollout.max_new_tokens": 8,
    "optim.minibatch_size": 8, "log.eval_examples": 2, "moe.router_aux_loss_coef": 0.01,
    "rewards.tiers": f"[{{name: task, reward: '{REWARD}:digit_share'}}]",
}  # fmt: skip
COVERAGE = re.compile(r"\[lora\] attention (\d+)/(\d+) projections, experts (\d+)/(\d+) weight tensors")


@pytest.fixture(scope="module")
def tokenizer(micro_pretrained):
    return load_tokenizer(str(micro_pretrained))


def _experts(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = set(find_targets(model).expert_parameters)
    return {n: p.detach().clone() for n, p in model.named_parameters() if n in names}


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_lora_sft_then_ppo_trains_every_architectures_experts(model_type, tokenizer, tmp_path, capsys):
    start = save_tiny(model_type, tmp_path / "start", tokenizer)
    sft_over, ppo_over = dict(SFT), dict(PPO)
    if model_type == "dbrx":
        with pytest.raises(UserError, match="cannot adapt DbrxForCausalLM's experts: .* outside"):
            STAGES["sft"](micro_config(SFTConfig, "sft", tmp_path / "refused", model_path=start, **sft_over))
        sft_over["lora.target_parameters"] = "[]"
        ppo_over["full_finetune"] = True
    sft = STAGES["sft"](micro_config(SFTConfig, "sft", tmp_path, model_path=start, **sft_over))
    covered = [tuple(map(int, m.groups())) for m in COVERAGE.finditer(capsys.readouterr().out)]
    attention, attention_total, experts, experts_total = covered[0]
    assert attention == attention_total > 0  # every projection, MLA and linear attention included
    adapter = json.loads((sft.final / "adapter_config.json").read_text())
    if model_type != "dbrx":
        assert experts == experts_total > 0
        found = find_targets(load_merged(str(start))).target_parameters
        assert sorted(adapter["target_parameters"]) == sorted(found)  # the adapter's config says the truth
        weights = load_file(sft.final / "adapter_model.safetensors")
        trained = [k for k in weights if ".experts." in k and "lora_B" in k]
        assert trained and all(weights[k].abs().sum() > 0 for k in trained)  # B starts at zero
    before = _experts(load_merged(str(sft.final)))
    ppo = STAGES["ppo"](micro_config(PPOConfig, "ppo", tmp_path, model_path=sft.final, **ppo_over))
    rows = [r for r in ppo.read_metrics() if "loss" in r]
    assert len(rows) == 2 and all(math.isfinite(r["moe/aux_loss"]) for r in rows)
    after = _experts(load_merged(str(ppo.final)))
    assert before.keys() == after.keys() and before
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every expert tensor moved in PPO
