"""Router losses, expert-load telemetry and routing replay on a micro Qwen3-MoE."""

import math

import pytest
import torch

from r1rl.model import build_config, build_model
from r1rl.moe import (
    RoutingReplay,
    expert_load,
    load_metrics,
    router_entropy,
    router_z_loss,
    routers,
    variance_balance_loss,
)


def test_variance_loss_hand_computed_and_zero_when_uniform():
    uniform = (torch.zeros(5, 4),)
    assert variance_balance_loss(uniform, None).item() == pytest.approx(0.0, abs=1e-12)
    # every token puts all its mass on expert 0: p = (1, 0, 0, 0) -> Σ(p − ¼)² = ¾
    peaked = (torch.tensor([[100.0, 0.0, 0.0, 0.0]] * 3),)
    assert variance_balance_loss(peaked, None, alpha=0.01).item() == pytest.approx(0.01 * 0.75, rel=1e-4)
    # masked tokens do not count
    mixed = (torch.cat([torch.zeros(2, 4), torch.tensor([[100.0, 0, 0, 0]])]),)
    assert variance_balance_loss(mixed, torch.tensor([[1, 1, 0]])).item() == pytest.approx(0.0, abs=1e-12)


def test_z_loss_hand_computed():
    logits = (torch.zeros(2, 4), torch.log(torch.tensor([[1.0, 1.0, 2.0, 4.0]] * 2)))
    want = (math.log(4) ** 2 + math.log(8) ** 2) / 2
    assert router_z_loss(logits, None).item() == pytest.approx(want, rel=1e-5)


def test_expert_load_and_metrics():
    # 3 tokens, 4 experts, top-1; the third token is padding
    logits = (torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 0, 5.0]]),)
    load = expert_load(logits, 1, torch.tensor([[1, 1, 0]]))
    assert load.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    m = load_metrics(load, router_entropy(logits, None))
    assert m["moe/dead_experts/0"] == 2
    assert m["moe/max_over_mean/0"] == pytest.approx(2.0)
    assert m["moe/load_cv/0"] == pytest.approx(1.0)
    assert 0 < m["moe/router_entropy/0"] < math.log(4)


def _model():
    cfg = build_config("micro", 64, pad_token_id=1, eos_token_id=0)
    model = build_model(cfg, seed=0)
    with torch.no_grad():
        for r in routers(model):
            r.weight.normal_(std=0.5)  # a router that actually discriminates
    return model


def test_routing_replay_forces_recorded_experts_and_keeps_router_gradients():
    torch.manual_seed(0)
    model = _model()
    replay = RoutingReplay(model)
    ids = torch.randint(2, 64, (4, 12))
    am = torch.ones_like(ids)
    with torch.no_grad(), replay.record(tuple(ids.shape)):
        before = model(input_ids=ids, attention_mask=am).logits
    rows = torch.tensor([2, 0])
    # unchanged weights: replay is a no-op
    with torch.no_grad(), replay.replay(rows, am[rows]):
        same = model(input_ids=ids[rows], attention_mask=am[rows]).logits
    assert torch.allclose(same, before[rows], atol=1e-5)
    assert replay.agreement == [1.0] * len(routers(model))
    # move the routers: without replay routing drifts, with replay it does not
    with torch.no_grad():
        for r in routers(model):
            r.weight.add_(torch.randn_like(r.weight))
    with torch.no_grad(), replay.replay(rows, am[rows], force=False):
        drifted = model(input_ids=ids[rows], attention_mask=am[rows]).logits
    assert min(replay.agreement) < 1.0
    seen = []
    hooks = [r.register_forward_hook(lambda m, i, o: seen.append(o[2])) for r in routers(model)]
    with replay.replay(rows, am[rows]):
        forced = model(input_ids=ids[rows], attention_mask=am[rows]).logits
    for h in hooks:
        h.remove()
    for layer, idx in enumerate(seen):  # later hooks see the replayed output: the recorded experts
        assert torch.equal(idx, replay.recorded[layer][rows].reshape(-1, idx.shape[-1]))
    assert not torch.allclose(forced, drifted, atol=1e-4)
    forced.sum().backward()
    assert all(r.weight.grad is not None and r.weight.grad.abs().sum() > 0 for r in routers(model))


def test_replay_without_recording_is_an_error():
    replay = RoutingReplay(_model())
    with pytest.raises(RuntimeError, match="nothing recorded"):
        with replay.replay(torch.tensor([0])):
            pass
