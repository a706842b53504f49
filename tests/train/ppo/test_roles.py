"""One base, three roles: the reference is the base, adapters are independent, nothing is copied."""

import copy

import torch

from r1rl.algorithms.ppo import logprobs_from_logits
from r1rl.config import LoraConfigModel
from r1rl.models.factory import build_config, build_model
from r1rl.train.ppo.roles import ActorCritic, position_ids_from


def _setup():
    cfg = build_config("micro", 64, pad_token_id=1, eos_token_id=0)
    base = build_model(cfg, seed=0)
    reference_copy = copy.deepcopy(base)
    ac = ActorCritic(base, LoraConfigModel(r=4, alpha=8))
    torch.manual_seed(0)
    for n, p in ac.peft.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.2)  # make both adapters non-trivial
    ids = torch.randint(2, 64, (3, 10))
    am = torch.ones_like(ids)
    am[0, :3] = 0  # left padding
    return ac, reference_copy, ids, am


def test_reference_is_base_with_adapters_disabled():
    ac, ref_model, ids, am = _setup()
    with torch.no_grad():
        ref_lp, _, _ = ac.policy_logprobs(ids, am, 4, reference=True)
        logits = ref_model(input_ids=ids, attention_mask=am, position_ids=position_ids_from(am)).logits
        expected = logprobs_from_logits(logits[:, -5:-1], ids[:, -4:])
        pol_lp, _, _ = ac.policy_logprobs(ids, am, 4)
    assert torch.allclose(ref_lp, expected, atol=1e-5)
    assert not torch.allclose(pol_lp, ref_lp, atol=1e-3)  # attention *and* expert LoRA are active


def test_critic_adapter_does_not_change_policy():
    ac, _, ids, am = _setup()
    with torch.no_grad():
        before, _, _ = ac.policy_logprobs(ids, am, 4)
        for p in ac.adapter_parameters("critic"):
            p.add_(1.0)
        ac.values(ids, am, 4)
        after, _, _ = ac.policy_logprobs(ids, am, 4)
    assert torch.equal(before, after)


def test_gradients_reach_only_the_active_role():
    ac, _, ids, am = _setup()
    lp, _, _ = ac.policy_logprobs(ids, am, 4)
    lp.sum().backward()
    assert all(p.grad is not None for p in ac.adapter_parameters("policy"))
    assert all(p.grad is None for p in ac.adapter_parameters("critic"))
    base = [p for n, p in ac.peft.named_parameters() if "lora_" not in n]
    assert base and all(p.grad is None and not p.requires_grad for p in base)
    ac.peft.zero_grad(set_to_none=True)
    ac.values(ids, am, 4).sum().backward()
    assert all(p.grad is not None for p in ac.adapter_parameters("critic"))
    assert all(p.grad is None for p in ac.adapter_parameters("policy"))


def test_expert_weights_are_adapted():
    ac, _, _, _ = _setup()
    names = [n for n, _ in ac.peft.named_parameters() if "lora_" in n and "experts" in n]
    assert any(".policy." in n for n in names) and any(".critic." in n for n in names)
