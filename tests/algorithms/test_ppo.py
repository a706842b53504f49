import math

import pytest
import torch

from r1rl.algorithms import ppo


def test_masked_mean_ignores_masked_values():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -7.0]])
    m = torch.tensor([[1, 1, 0], [1, 1, 0]]).float()
    assert ppo.masked_mean(x, m).item() == pytest.approx(2.5)
    x2 = x.clone()
    x2[:, 2] = 12345.0
    assert ppo.masked_mean(x2, m).item() == ppo.masked_mean(x, m).item()


def test_masked_whiten_zero_mean_unit_var():
    torch.manual_seed(0)
    x = torch.randn(4, 6) * 3 + 5
    m = torch.ones(4, 6)
    m[0, 3:] = 0
    w = ppo.masked_whiten(x, m)
    assert ppo.masked_mean(w, m).item() == pytest.approx(0.0, abs=1e-6)
    assert ppo.masked_var(w, m).item() == pytest.approx(1.0, abs=1e-4)
    assert (w[0, 3:] == 0).all()


def test_gae_hand_computed():
    # one sequence of 3 tokens, reward only at the end; written out with γ and λ:
    g, lam = 0.9, 0.8
    r = torch.tensor([[0.0, 0.0, 1.0]])
    v = torch.tensor([[0.5, 0.6, 0.7]])
    m = torch.ones(1, 3)
    adv, ret = ppo.gae(r, v, m, g, lam)
    d2 = 1.0 - 0.7
    d1 = 0.0 + g * 0.7 - 0.6
    d0 = 0.0 + g * 0.6 - 0.5
    expected = [d0 + g * lam * d1 + (g * lam) ** 2 * d2, d1 + g * lam * d2, d2]
    assert adv[0].tolist() == pytest.approx(expected)
    assert ret[0].tolist() == pytest.approx([a + b for a, b in zip(expected, [0.5, 0.6, 0.7])])


def _gae_loop(r, v, m, g, lam):
    B, T = r.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        idx = [t for t in range(T) if m[b, t] > 0]
        last = 0.0
        for j in reversed(range(len(idx))):
            t = idx[j]
            nv = v[b, idx[j + 1]] if j + 1 < len(idx) else 0.0
            delta = r[b, t] + g * nv - v[b, t]
            last = delta + g * lam * last
            adv[b, t] = last
    return adv


def test_gae_vectorised_matches_loop_with_padding():
    torch.manual_seed(1)
    r, v = torch.randn(5, 7), torch.randn(5, 7)
    m = torch.ones(5, 7)
    m[1, 4:] = 0
    m[3, 1:] = 0
    adv, _ = ppo.gae(r, v, m, 0.97, 0.9)
    assert torch.allclose(adv, _gae_loop(r, v, m, 0.97, 0.9), atol=1e-6)


def test_gae_values_at_padding_do_not_matter():
    torch.manual_seed(2)
    r, v = torch.randn(2, 5), torch.randn(2, 5)
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).float()
    a1, _ = ppo.gae(r, v, m, 1.0, 0.95)
    v2, r2 = v.clone(), r.clone()
    v2[0, 3:], r2[0, 3:] = 99.0, -99.0
    a2, _ = ppo.gae(r2, v2, m, 1.0, 0.95)
    assert torch.equal(a1, a2)


def test_kl_estimators_at_ratio_e():
    # log π = 0, log π_ref = 1: log r = 1, r = e
    lp, ref = torch.tensor([[0.0]]), torch.tensor([[1.0]])
    assert ppo.kl_penalty(lp, ref, "k1").item() == pytest.approx(-1.0)
    assert ppo.kl_penalty(lp, ref, "k2").item() == pytest.approx(0.5)
    assert ppo.kl_penalty(lp, ref, "k3").item() == pytest.approx(math.e - 2)
    with pytest.raises(ValueError, match="k4"):
        ppo.kl_penalty(lp, ref, "k4")


def test_policy_loss_clips_ratio():
    # ratio e > 1 + ε with positive advantage: clipped, loss = -(1 + ε)·A
    lp, old = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    a, m = torch.tensor([[2.0]]), torch.ones(1, 1)
    loss, stats = ppo.policy_loss(lp, old, a, m, clip_eps_low=0.2)
    assert loss.item() == pytest.approx(-1.2 * 2.0)
    assert stats["policy/clipfrac"] == 1.0
    # asymmetric: ε_high = 0.5
    loss, _ = ppo.policy_loss(lp, old, a, m, clip_eps_low=0.2, clip_eps_high=0.5)
    assert loss.item() == pytest.approx(-1.5 * 2.0)
    # negative advantage, ratio e: unclipped branch is larger: e·|A|; dual-clip caps at 3·|A|
    loss, _ = ppo.policy_loss(lp, old, -a, m)
    assert loss.item() == pytest.approx(math.e * 2.0)
    lp_big = torch.tensor([[2.0]])
    loss, _ = ppo.policy_loss(lp_big, old, -a, m, dual_clip=3.0)
    assert loss.item() == pytest.approx(3.0 * 2.0)


def test_policy_loss_gradient_is_advantage_at_ratio_one():
    lp = torch.zeros(1, 3, requires_grad=True)
    a = torch.tensor([[1.0, -2.0, 0.5]])
    loss, _ = ppo.policy_loss(lp, torch.zeros(1, 3), a, torch.ones(1, 3))
    loss.backward()
    assert lp.grad[0].tolist() == pytest.approx([-1 / 3, 2 / 3, -0.5 / 3])


def test_value_loss_clipping():
    v, old, ret, m = torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1)
    # unclipped error 0, clipped prediction 0.2 -> error 0.64; max picks 0.64
    loss, stats = ppo.value_loss(v, old, ret, m, clip_eps=0.2)
    assert loss.item() == pytest.approx(0.5 * 0.64)
    assert stats["value/clipfrac"] == 1.0
    loss, _ = ppo.value_loss(v, old, ret, m, clip_eps=None)
    assert loss.item() == 0.0


def test_agg_loss_modes():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 1], [1, 0, 0]]).float()
    assert ppo.agg_loss(loss, m, "token-mean").item() == pytest.approx(10 / 4)
    assert ppo.agg_loss(loss, m, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert ppo.agg_loss(loss, m, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    with pytest.raises(ValueError, match="unknown loss_agg_mode"):
        ppo.agg_loss(loss, m, "sum")


def test_token_rewards_put_score_on_last_real_token():
    scores = torch.tensor([1.0, 2.0])
    kl = torch.ones(2, 4)
    m = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).float()
    r = ppo.token_rewards(scores, kl, m, kl_coef=0.1)
    assert torch.allclose(r, torch.tensor([[-0.1, 0.9, 0.0, 0.0], [-0.1, -0.1, -0.1, 1.9]]))


def test_entropy_and_logprobs():
    logits = torch.zeros(1, 1, 4)  # uniform over 4
    assert ppo.entropy_from_logits(logits).item() == pytest.approx(math.log(4))
    assert ppo.logprobs_from_logits(logits, torch.tensor([[2]])).item() == pytest.approx(-math.log(4))


def test_adaptive_kl_controller():
    ctl = ppo.AdaptiveKLController(0.1, target=1.0, horizon=100)
    ctl.update(current_kl=2.0, n_steps=10)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    ctl.update(current_kl=1.0, n_steps=10)  # on target: unchanged
    assert ctl.value == pytest.approx(0.1 * 1.02)


def test_grpo_group_advantages_hand_computed():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two prompts, three samples each
    adv = ppo.group_advantages(scores, 3, "grpo", eps=0.0)
    std = torch.tensor([1.0, 0.0, 0.0]).std().item()  # unbiased, as torch.std
    assert adv[:3].tolist() == pytest.approx([2 / 3 / std, -1 / 3 / std, -1 / 3 / std])
    assert adv[3:].abs().max().item() == 0  # a group that agrees carries no signal
    dr = ppo.group_advantages(scores, 3, "grpo", scale_by_std=False)
    assert dr[:3].tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3])


def test_rloo_matches_leave_one_out_loop():
    torch.manual_seed(0)
    scores = torch.rand(12)
    adv = ppo.group_advantages(scores, 4, "rloo")
    for i in range(12):
        g = i // 4
        others = [scores[j].item() for j in range(g * 4, g * 4 + 4) if j != i]
        assert adv[i].item() == pytest.approx(scores[i].item() - sum(others) / 3, abs=1e-6)


def test_group_advantages_reject_ragged_groups():
    with pytest.raises(ValueError, match="groups of 4"):
        ppo.group_advantages(torch.zeros(6), 4)


def test_discounted_returns_match_loop_with_padding():
    torch.manual_seed(0)
    r, m = torch.randn(3, 5), torch.ones(3, 5)
    m[1, 3:] = 0
    m[2, 1:] = 0
    out = ppo.discounted_returns(r, m, gamma=0.9)
    for b in range(3):
        n = int(m[b].sum())
        for t in range(5):
            want = sum(0.9 ** (s - t) * r[b, s].item() for s in range(t, n)) if t < n else 0.0
            assert out[b, t].item() == pytest.approx(want, abs=1e-5)


def test_reinforce_pp_is_whitened_returns():
    scores = torch.tensor([1.0, 0.0, 0.5])
    kl, m = torch.full((3, 4), 0.1), torch.ones(3, 4)
    m[2, 2:] = 0
    adv = ppo.reinforce_pp_advantages(scores, kl, m, kl_coef=0.5)
    assert ppo.masked_mean(adv, m).item() == pytest.approx(0.0, abs=1e-6)
    assert ppo.masked_var(adv, m).item() == pytest.approx(1.0, abs=1e-4)
    # within a sequence, earlier tokens pay more KL still to come: advantages rise along it
    assert (adv[0, 1:] > adv[0, :-1]).all()


@pytest.mark.parametrize("agg", ppo.AGG_MODES)
def test_empty_eos_only_and_truncated_completions_stay_finite(agg):
    # rows: no token at all, EOS only, truncated (every position real, no EOS)
    m = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 1]]).float()
    scores = torch.tensor([0.0, 1.0, 0.5])
    kl = torch.full((3, 3), 0.1) * m
    rewards = ppo.token_rewards(scores, kl, m, 0.1)
    assert rewards[0].abs().sum() == 0  # an empty completion gets no reward anywhere
    assert rewards[1, 0].item() == pytest.approx(1.0 - 0.01) and rewards[2, 2].item() == pytest.approx(0.49)
    adv, ret = ppo.gae(rewards, torch.zeros(3, 3), m, 1.0, 1.0)
    adv = ppo.masked_whiten(adv, m)
    lp = torch.zeros(3, 3, requires_grad=True)
    loss, stats = ppo.policy_loss(lp, torch.zeros(3, 3), adv, m, agg_mode=agg)
    v_loss, _ = ppo.value_loss(torch.zeros(3, 3), torch.zeros(3, 3), ret, m, agg_mode=agg)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(v_loss) and torch.isfinite(lp.grad).all()
    assert lp.grad[0].abs().sum() == 0 and all(map(math.isfinite, stats.values()))


# ----------------------------------------------------------------------------- GSPO


def test_sequence_ratio_of_log_ratios_averaging_one_is_e():
    lp = torch.tensor([[0.5, 1.5, 9.0], [2.0, 0.0, 1.0]])  # the 9.0 sits on padding
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    s = ppo.sequence_log_ratio(lp, torch.zeros(2, 3), mask).exp()
    assert torch.allclose(s, torch.tensor([math.e, math.e]))


def test_gspo_loss_hand_computed_and_clipped_per_sequence():
    # sequence 0: log-ratio 1e-4 per token (s = e^1e-4, inside 1 ± ε); sequence 1: 0.01 (clipped)
    old = torch.zeros(2, 2)
    lp = torch.tensor([[1e-4, 1e-4], [0.01, 0.01]])
    adv = torch.tensor([[2.0, 2.0], [1.0, 1.0]])
    mask = torch.ones(2, 2)
    loss, m = ppo.gspo_policy_loss(lp, old, adv, mask, 3e-4, 4e-4)
    s0, s1_clipped = math.exp(1e-4), 1 + 4e-4  # A > 0: min(s A, clip(s) A) takes the clipped upper bound
    assert float(loss) == pytest.approx(-(s0 * 2.0 + s1_clipped * 1.0) / 2, rel=1e-6)
    assert m["policy/clipfrac"] == 0.5  # one of two sequences


def test_gspo_token_gradient_equals_gspo_with_one_advantage_per_sequence():
    torch.manual_seed(0)
    old = torch.randn(3, 5) * 0.01
    mask = torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2, [1.0] * 4 + [0.0]])
    adv = torch.tensor([[0.7], [-1.2], [0.3]]).expand(3, 5) * mask  # constant along each sequence
    grads = []
    for token_level in (False, True):
        lp = (old + torch.randn(3, 5, generator=torch.Generator().manual_seed(1)) * 1e-4).requires_grad_()
        loss, _ = ppo.gspo_policy_loss(lp, old, adv, mask, 0.5, 0.5, token_level=token_level)
        loss.backward()
        grads.append(lp.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-7)
    assert grads[0].abs().sum() > 0 and (grads[0] * (1 - mask)).abs().sum() == 0  # padding gets nothing


def test_gspo_token_allows_per_token_advantages():
    lp = torch.zeros(1, 3, requires_grad=True)
    adv = torch.tensor([[1.0, 0.0, -1.0]])
    loss, _ = ppo.gspo_policy_loss(lp, torch.zeros(1, 3), adv, torch.ones(1, 3), 0.2, 0.2, token_level=True)
    loss.backward()
    assert torch.allclose(lp.grad, -adv / 3)  # sᵢ = 1: token t gets −Aᵢ,ₜ / |oᵢ|
