"""Router losses, expert-load telemetry and routing replay on a micro Qwen3-MoE."""

import math

import pytest
import torch

from r1rl.algorithms.router import (
    expert_load,
    load_metrics,
    router_entropy,
    router_z_loss,
    switch_loss_global,
    variance_balance_loss,
)
from r1rl.models.factory import build_config, build_model
from r1rl.models.moe import RoutingReplay, routers


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


def _replayed_grads(model, replay, ids, am, rows, backward_inside):
    model.zero_grad()
    with replay.replay(rows, am[rows]):
        loss = model(input_ids=ids[rows], attention_mask=am[rows]).logits.pow(2).mean()
        if backward_inside:
            loss.backward()
    if not backward_inside:
        loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_routing_replay_under_gradient_checkpointing_needs_the_backward_inside_replay():
    """The backward pass recomputes each checkpointed layer, router hooks included: inside replay()
    it recomputes the replayed routing (the same gradients as without checkpointing); outside, the
    recomputation routes afresh and torch.utils.checkpoint refuses it."""
    torch.manual_seed(0)
    model = _model()
    model.train()
    replay = RoutingReplay(model)
    ids, rows = torch.randint(2, 64, (4, 12)), torch.tensor([3, 1])
    am = torch.ones_like(ids)
    with torch.no_grad(), replay.record(tuple(ids.shape)):
        model(input_ids=ids, attention_mask=am)
    with torch.no_grad():
        for r in routers(model):
            r.weight.add_(torch.randn_like(r.weight))  # the update would route differently
    plain = _replayed_grads(model, replay, ids, am, rows, backward_inside=False)
    model.gradient_checkpointing_enable()
    checkpointed = _replayed_grads(model, replay, ids, am, rows, backward_inside=True)
    assert len(plain) == len(checkpointed) and all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed)
    )
    with pytest.raises(torch.utils.checkpoint.CheckpointError):
        _replayed_grads(model, replay, ids, am, rows, backward_inside=False)


def test_replay_without_recording_is_an_error():
    replay = RoutingReplay(_model())
    with pytest.raises(RuntimeError, match="nothing recorded"):
        with replay.replay(torch.tensor([0])):
            pass


def test_global_switch_loss_alone_is_transformers_aux_loss():
    """With one process (identity all-sum) the global Switch loss is transformers' own, value and gradient."""
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    torch.manual_seed(0)
    logits = tuple(torch.randn(12, 8, requires_grad=True) for _ in range(3))  # L=3 layers, N=12, E=8
    mask = (torch.rand(3, 4) > 0.3).long()
    ours = switch_loss_global(logits, 2, mask, lambda t: t, 1)
    theirs = load_balancing_loss_func(logits, 8, 2, mask)
    torch.testing.assert_close(ours, theirs)
    g_ours = torch.autograd.grad(ours, logits)
    g_theirs = torch.autograd.grad(load_balancing_loss_func(logits, 8, 2, mask), logits)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b)


def test_global_switch_loss_split_over_simulated_processes_equals_whole_batch():
    """Two halves, their statistics summed as all-reduce would: the mean of the two losses is the
    whole batch's loss, and the summed gradients / 2 (DDP's average) are the whole batch's."""
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    torch.manual_seed(1)
    B, S, E, L = 4, 3, 6, 2
    logits = [torch.randn(B * S, E, requires_grad=True) for _ in range(L)]
    mask = (torch.rand(B, S) > 0.2).long()
    whole = load_balancing_loss_func(tuple(logits), E, 2, mask)
    halves = [slice(0, 2), slice(2, 4)]
    parts = [tuple(x.view(B, S, E)[h].reshape(-1, E) for x in logits) for h in halves]

    def stats(part, m):  # what each process contributes to the all-reduce
        w = m.reshape(-1).float()
        counts = torch.zeros(E)
        for x in part:
            idx = torch.softmax(x.float(), -1).topk(2, -1).indices
            counts = counts.scatter_add(0, idx.reshape(-1), w.repeat_interleave(2))
        return torch.cat([counts, (w.sum() * L).reshape(1)]).detach()

    total = stats(parts[0], mask[halves[0]]) + stats(parts[1], mask[halves[1]])
    losses = [switch_loss_global(p, 2, mask[h], lambda t: total, 2) for p, h in zip(parts, halves)]
    torch.testing.assert_close((losses[0] + losses[1]) / 2, whole)
    g_split = torch.autograd.grad((losses[0] + losses[1]) / 2, logits)
    g_whole = torch.autograd.grad(load_balancing_loss_func(tuple(logits), E, 2, mask), logits)
    for a, b in zip(g_split, g_whole):
        torch.testing.assert_close(a, b)
