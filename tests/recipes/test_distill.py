"""The distill stage on the micro runs (contract, counts, logit distillation, resume) and its math by hand."""

import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1rl.config import DistillConfig, SamplingConfig
from r1rl.errors import UserError
from r1rl.models.factory import load_merged, load_tokenizer
from r1rl.run.stages import STAGES
from r1rl.tasks.arithmetic import ArithmeticTask
from r1rl.train.distill import (
    LogitDistillation,
    Teacher,
    accepted_through,
    dedup,
    generalized_jsd,
    sample_traces,
    soft_kl,
)
from r1rl.train.prepare import hierarchy_of

sys.path.insert(0, str(Path(__file__).parent))
from micro import micro_config  # noqa: E402  (the shared micro runs: the fixture `runs`, conftest.py)

ALWAYS = Path(__file__).parent / "always.py"  # a reward file: always_one passes every completion
SAMPLED = 16 * 2  # micro/distill.yaml: 16 prompts, 2 samples each


def _distill_cfg(runs, tmp, always=False, **over):
    """micro/distill.yaml on the shared runs; ``always``: tiers [any (always 1), task], gating on any."""
    models = {"model_path": runs["pretrain"].final, "teacher_path": runs["ppo"].final}
    if always:
        models["rewards.tiers"] = (
            f"[{{name: any, reward: '{ALWAYS}:always_one'}}, {{name: task, reward: arithmetic_task}}]"
        )
        models["sampling.accept_tier"] = "any"
    return micro_config(DistillConfig, "distill", tmp, **{**models, **over})


@pytest.fixture(scope="module")
def distilled(runs, tmp_path_factory):
    over = {"logits.loss": "kl", "logits.temperature": 2.0, "log.eval_every": 2, "log.eval_examples": 8}
    return STAGES["distill"](_distill_cfg(runs, tmp_path_factory.mktemp("distill"), always=True, **over))


def test_run_directory_contract_and_logit_distillation(distilled):
    rd = distilled
    assert rd.config.exists() and (rd.final / "adapter_config.json").exists()
    assert (rd.plots / "loss.png").stat().st_size > 1000
    rows = rd.read_metrics()
    assert all(r["stage"] == "distill" for r in rows) and [r["step"] for r in rows] == [0, 2, 4]
    for r in rows[1:]:
        assert {"loss", "lr", "grad_norm", "moe/aux_loss", "eval/accuracy"} <= set(r)
        assert r["distill/kl"] > 0 and math.isfinite(r["distill/kl"])  # the student is not yet the teacher
    base = json.loads((rd.final / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_absolute() and Path(base).name == "final"


def test_counts(distilled):
    counts = distilled.read_metrics()[0]
    traces = [json.loads(line) for line in (distilled.path / "traces.jsonl").read_text().splitlines()]
    assert counts["distill/prompts"] == 16 and counts["distill/sampled"] == SAMPLED
    assert counts["distill/accepted/any"] == counts["distill/accepted"] == SAMPLED  # the always-1 tier
    assert counts["distill/accepted/task"] <= counts["distill/accepted/any"]  # gated: task needs any too
    assert counts["distill/acceptance_rate"] == 1.0
    assert 0 < counts["distill/kept"] == len(traces) <= counts["distill/accepted"]
    assert len({(t["prompt"], t["completion"]) for t in traces}) == len(traces)  # no duplicate kept
    assert {"prompt", "completion", "answer", "reward"} <= set(traces[0])


def test_the_student_pushes_like_any_stage(distilled, runs, tmp_path):
    """A dry-run push of the distill run: the adapter and tokenizer, and a card naming the teacher and
    the tiers that accepted its samples."""
    from r1rl.report.hub import describe_run, push_run

    assert [s.stage for s in describe_run(distilled.path).lineage] == ["pretrain", "distill"]
    out = Path(push_run(distilled.path, "acme/micro-student", dry_run=tmp_path / "dry"))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    card = (out / "README.md").read_text()
    assert f"taught by {runs['ppo'].final}" in card and "→ pretrain → distill" in card
    assert "The distill stage trained on the teacher's samples that passed these tiers" in card
    # the tier's reward file travels with the model, and the card links it rather than a local path
    assert "| any | [`rewards/always.py:always_one`](rewards/always.py) |" in card
    assert (out / "rewards" / "always.py").read_text() == ALWAYS.read_text()


def test_resume_is_exact(runs, tmp_path):
    """An interrupted distill run resumed from its checkpoint ends bitwise equal to a straight run,
    without sampling again or logging the counts twice."""
    straight = STAGES["distill"](_distill_cfg(runs, tmp_path / "a", always=True))
    cfg = _distill_cfg(runs, tmp_path / "b", always=True, **{"checkpoint.every": 2})
    rd = STAGES["distill"](cfg)
    shutil.rmtree(rd.final)  # a crash after step 2: the traces and the step-2 checkpoint remain
    traces_written = (rd.path / "traces.jsonl").stat().st_mtime_ns
    rd = STAGES["distill"](cfg)
    a = load_file(straight.final / "adapter_model.safetensors")
    b = load_file(rd.final / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (rd.path / "traces.jsonl").stat().st_mtime_ns == traces_written
    assert [r["step"] for r in rd.read_metrics()] == [0, 2, 4]
    assert rd.read_metrics()[0] == straight.read_metrics()[0]


def test_nothing_accepted_is_one_line(runs, tmp_path):
    with pytest.raises(UserError, match=f"no trace of the {SAMPLED} sampled passed the tiers"):
        STAGES["distill"](_distill_cfg(runs, tmp_path))  # the task's own tiers: the micro teacher passes none


def test_bad_inputs_are_refused_before_any_write(runs, tmp_path):
    with pytest.raises(UserError, match="no tier 'tsk'; the hierarchy's tiers are syntax, logic, task"):
        STAGES["distill"](_distill_cfg(runs, tmp_path, **{"sampling.accept_tier": "tsk"}))
    other = tmp_path / "other"
    shutil.copytree(runs["ppo"].final, other)
    vocab = json.loads((other / "tokenizer.json").read_text())
    a, b = sorted(vocab["model"]["vocab"], key=vocab["model"]["vocab"].get)[-2:]  # swap two token ids
    vocab["model"]["vocab"][a], vocab["model"]["vocab"][b] = (
        vocab["model"]["vocab"][b],
        vocab["model"]["vocab"][a],
    )
    (other / "tokenizer.json").write_text(json.dumps(vocab))
    with pytest.raises(UserError, match="different tokenizers .* 2 differing"):
        STAGES["distill"](_distill_cfg(runs, tmp_path, teacher_path=other))
    assert not (tmp_path / "distill").exists()


@dataclass
class _Rank:
    """Rank ``rank`` of a world of 2, whose gather hands back ``others`` (what the other rank sampled)."""

    rank: int
    others: dict | None = None
    world: int = 2
    sent: dict | None = None

    is_main = property(lambda self: self.rank == 0)

    def gather_objects(self, obj):
        self.sent = obj
        return [obj, self.others] if self.rank == 0 else [self.others or {}, obj]


def test_traces_do_not_depend_on_the_process_count_nor_touch_the_rng(runs):
    teacher, tokenizer = load_merged(str(runs["ppo"].final)), load_tokenizer(str(runs["ppo"].final))
    task = ArithmeticTask(min_operands=2, max_operands=3, digits=1)
    prompts, hierarchy = list(task.records("train"))[:12], hierarchy_of(None, task)
    cfg = SamplingConfig(samples_per_prompt=2, max_new_tokens=12, batch_size=4, accept_tier="syntax")
    rng = torch.get_rng_state()
    sampler = Teacher(teacher, tokenizer, task)
    alone = sample_traces(sampler, prompts, hierarchy, cfg, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # the stage's own random stream is untouched
    second = _Rank(1)
    sample_traces(sampler, prompts, hierarchy, cfg, seed=3, par=second)  # batch 1
    first = sample_traces(sampler, prompts, hierarchy, cfg, seed=3, par=_Rank(0, second.sent))
    assert sorted(second.sent) == [1] and first == alone
    assert alone.counts["distill/sampled"] == 24


def test_accepted_through_gates_each_tier_on_those_below():
    passed = {
        "syntax": [True, True, False, True],
        "logic": [True, False, True, True],
        "task": [False, True, True, True],
    }
    through = accepted_through(passed)
    assert through["syntax"] == passed["syntax"]
    assert through["logic"] == [True, False, False, True] and through["task"] == [False, False, False, True]


def test_dedup_keeps_the_first_of_each_prompt_completion_pair():
    chat = [{"role": "user", "content": "1+1="}]
    rows = [{"prompt": "1+1=", "completion": "2", "i": 0}, {"prompt": "1+1=", "completion": "2", "i": 1},
            {"prompt": chat, "completion": "2", "i": 2}, {"prompt": list(chat), "completion": "2", "i": 3},
            {"prompt": "1+1=", "completion": "3", "i": 4}]  # fmt: skip
    assert [r["i"] for r in dedup(rows)] == [0, 2, 4]


# ---------------------------------------------------------------------------- the losses, by hand


def _logits(*probs):
    """Logits (1, 1, V) whose softmax is ``probs``."""
    return torch.tensor(probs, dtype=torch.float64).log().reshape(1, 1, -1)


def test_kl_of_identical_distributions_is_zero():
    z = torch.randn(2, 3, 7)
    for t in (0.5, 1.0, 4.0):
        assert torch.allclose(soft_kl(z, z.clone(), temperature=t), torch.zeros(2, 3), atol=1e-6)
        assert torch.allclose(
            generalized_jsd(z, z.clone(), beta=0.3, temperature=t), torch.zeros(2, 3), atol=1e-6
        )


def test_kl_is_scaled_by_t_squared():
    """Teacher logits [0, 2 ln 3] at τ = 2 soften to P = (1/4, 3/4); Q = (1/2, 1/2)."""
    teacher, student = torch.tensor([[[0.0, 2 * math.log(3)]]]), torch.zeros(1, 1, 2)
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(soft_kl(student, teacher, temperature=2.0)) == pytest.approx(4 * kl, rel=1e-6)
    assert float(soft_kl(student, teacher / 2, temperature=1.0)) == pytest.approx(kl, rel=1e-6)


def test_kl_matches_a_loop_over_positions():
    s, t = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    out = soft_kl(s, t, temperature=1.5)
    for b in range(2):
        for i in range(3):
            p, q = torch.softmax(t[b, i] / 1.5, -1), torch.softmax(s[b, i] / 1.5, -1)
            assert float(out[b, i]) == pytest.approx(
                1.5**2 * sum(float(p[v] * (p[v] / q[v]).log()) for v in range(5)), rel=1e-5
            )


def test_jsd_by_hand_and_its_limits():
    p, q = _logits(0.25, 0.75), _logits(0.75, 0.25)  # teacher P, student Q; at β = ½, M = (½, ½)
    half = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert float(generalized_jsd(q, p, beta=0.5)) == pytest.approx(half, rel=1e-9)
    p, q = _logits(0.25, 0.75), _logits(0.6, 0.4)
    forward, reverse = float(soft_kl(q, p)), float(soft_kl(p, q))  # KL(P ‖ Q), KL(Q ‖ P)
    assert forward != pytest.approx(reverse)
    # GKD's endpoints: β = 0 is the forward KL, β = 1 the reverse KL, the limits of JSD(β)/β and /(1 − β)
    assert float(generalized_jsd(q, p, beta=0.0)) == pytest.approx(forward, rel=1e-12)
    assert float(generalized_jsd(q, p, beta=1.0)) == pytest.approx(reverse, rel=1e-12)
    assert float(generalized_jsd(q, p, beta=1e-6)) / 1e-6 == pytest.approx(forward, rel=1e-4)
    assert float(generalized_jsd(q, p, beta=1 - 1e-6)) / 1e-6 == pytest.approx(reverse, rel=1e-4)
    for beta in (0.1, 0.5, 0.9):  # bounded by ln 2, unlike either KL
        assert 0 < float(generalized_jsd(q, p, beta=beta)) < math.log(2)


class _Fixed(torch.nn.Module):
    """A 'model' that returns fixed logits (B, S, V)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, **kwargs):
        return type("Out", (), {"logits": self.logits})()


def test_the_hook_is_a_token_mean_over_trained_positions_only():
    labels = torch.tensor([[-100, -100, 5, 6, 0], [-100, 7, 0, -100, -100]])  # 3 + 2 trained tokens
    batch = {
        "input_ids": torch.zeros(2, 5, dtype=torch.long),
        "attention_mask": torch.ones(2, 5),
        "labels": labels,
    }
    teacher, student = torch.randn(2, 5, 9), torch.randn(2, 5, 9)
    hook = LogitDistillation(_Fixed(teacher), "kl", coef=0.5, temperature=1.0)
    term, metrics = hook(batch, student, torch.tensor(5.0))
    per_token = soft_kl(student[:, :-1], teacher[:, :-1])  # position t predicts label t + 1
    trained = [(0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    expected = sum(float(per_token[b, t]) for b, t in trained) / 5
    assert float(metrics["distill/kl"]) == pytest.approx(expected, rel=1e-6)
    assert float(term) == pytest.approx(0.5 * expected, rel=1e-6)
    moved = student.clone()
    moved[1, 3:] += (
        100.0  # logits at untrained positions (and the last, which predicts nothing) do not matter
    )
    moved[0, 4] -= 50.0
    assert float(hook(batch, moved, torch.tensor(5.0))[0]) == pytest.approx(float(term), rel=1e-6)


def test_multi_turn_traces_keep_the_environment_as_context(runs, tmp_path):
    """With an environment, a trace is the teacher's whole episode; the student trains on its turns."""
    env = f"{Path(__file__).parents[1] / 'envs' / 'trl_style.py'}:AskOnce"
    cfg = _distill_cfg(runs, tmp_path, always=True, **{"env.environment": env, "env.max_turns": 2})
    rd = STAGES["distill"](cfg)
    traces = [json.loads(line) for line in (rd.path / "traces.jsonl").read_text().splitlines()]
    assert traces and all(isinstance(t["completion"], list) for t in traces)
    two_turns = [
        t for t in traces if [m["role"] for m in t["completion"]] == ["assistant", "user", "assistant"]
    ]
    assert two_turns  # the environment answered, the teacher wrote on
    assert all(t["completion"][1]["content"] == "again?" for t in two_turns)
    assert rd.read_metrics()[-1]["loss"] > 0
