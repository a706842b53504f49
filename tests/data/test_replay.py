"""The loss-prioritised replay buffer: bounded, favours high loss, tracks current loss, statistics."""

import numpy as np
import pytest

from r1rl.data.replay import ReplayBuffer
from r1rl.errors import UserError


def test_bounded_and_keeps_highest_losses():
    buf = ReplayBuffer(capacity=3, replay_fraction=0.5)
    buf.update([0, 1, 2, 3, 4], [0.1, 0.9, 0.5, 0.7, 0.2])
    assert len(buf) == 3 and buf.priorities == {1: 0.9, 3: 0.7, 2: 0.5}
    rng = np.random.default_rng(0)
    for _ in range(50):
        ids = rng.integers(0, 1000, size=16)
        buf.update(ids.tolist(), rng.random(16).tolist())
        assert len(buf) <= 3


def test_latest_loss_replaces_priority_so_learned_examples_leave():
    buf = ReplayBuffer(capacity=2, replay_fraction=0.5)
    buf.update([1, 2], [5.0, 4.0])
    buf.update([1], [0.1])  # example 1 has been learned
    buf.update([3], [1.0])  # a harder one arrives and pushes it out
    assert buf.priorities == {2: 4.0, 3: 1.0}
    s = buf.stats
    assert (s.observed, s.inserted, s.evicted, s.rejected, s.size) == (4, 3, 1, 0, 2)
    buf.update([4], [0.01])  # lower than everything in a full buffer: never enters
    assert 4 not in buf.priorities and buf.stats.rejected == 1 and buf.stats.inserted == 3


def test_sampling_is_proportional_to_priority_power_alpha():
    for alpha, want in ((1.0, 0.75), (0.0, 0.5), (2.0, 0.9)):
        buf = ReplayBuffer(capacity=10, replay_fraction=1.0, alpha=alpha, seed=0)
        buf.update([7, 8], [1.0, 3.0])
        draws = buf.sample(20_000)
        assert set(draws.tolist()) == {7, 8}
        assert np.mean(draws == 8) == pytest.approx(want, abs=0.015)  # 3^a / (1 + 3^a)


def test_replay_fraction_and_statistics():
    buf = ReplayBuffer(capacity=4, replay_fraction=0.25, seed=0)
    assert buf.num_replay(100) == 0 and len(buf.sample(5)) == 0  # empty: nothing to replay
    buf.update([1, 2, 3], [1.0, 2.0, 3.0])
    n = [buf.num_replay(100) for _ in range(200)]
    assert np.mean(n) == pytest.approx(25, abs=1.0)
    buf.sample(10)
    s = buf.stats
    assert s.replayed == 10 and 1 <= s.unique_replayed <= 3
    assert (s.min_priority, s.max_priority, s.mean_priority) == (1.0, 3.0, 2.0)
    assert s.to_dict()["capacity"] == 4


def test_non_finite_losses_ignored_and_state_round_trip():
    buf = ReplayBuffer(capacity=3, replay_fraction=0.5, seed=1)
    buf.update([1, 2, 3], [1.0, float("nan"), 2.0])
    assert buf.priorities == {1: 1.0, 3: 2.0}
    copy = ReplayBuffer(capacity=3, replay_fraction=0.5, seed=99)
    copy.load_state_dict(buf.state_dict())
    assert copy.sample(20).tolist() == buf.sample(20).tolist()
    assert copy.stats.to_dict() == buf.stats.to_dict()


@pytest.mark.parametrize("kwargs", [dict(capacity=0), dict(replay_fraction=1.5), dict(alpha=-1)])
def test_bad_settings(kwargs):
    args = dict(capacity=2, replay_fraction=0.5) | kwargs
    with pytest.raises(UserError, match="replay"):
        ReplayBuffer(**args)
