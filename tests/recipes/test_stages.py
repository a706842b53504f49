"""Each stage on the micro config: the run-directory contract, metrics, and loadable finals."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1rl.config import PPOConfig, PretrainConfig, SFTConfig
from r1rl.errors import UserError
from r1rl.run.stages import STAGES
from r1rl.train.supervised import collate

sys.path.insert(0, str(Path(__file__).parent))
from micro import micro_config as _cfg  # noqa: E402  (the shared micro runs: the fixture `runs`, conftest.py)


@pytest.mark.parametrize("stage", ["pretrain", "sft", "ppo"])
def test_run_directory_contract(runs, stage):
    rd = runs[stage]
    assert rd.config.exists() and rd.final.is_dir() and not (rd.path / "final.tmp").exists()
    rows = rd.read_metrics()
    assert rows and all(r["stage"] == stage and isinstance(r["step"], int) for r in rows)
    assert (rd.plots / "loss.png").stat().st_size > 1000
    keys = set().union(*rows)
    assert {
        "loss",
        "lr",
        "grad_norm",
        "moe/aux_loss",
        "moe/load_cv/0",
        "perf/step_s",
        "perf/tokens_per_s",
    } <= keys


def test_ppo_metrics_and_reward_plot(runs):
    rows = runs["ppo"].read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ["reward/mean", "reward/tier/syntax/pass_rate", "reward/tier/logic/pass_rate",
                "reward/tier/task/pass_rate", "kl", "entropy", "policy/clipfrac", "policy/approx_kl",
                "value/loss", "value/explained_var"]:  # fmt: skip
        assert key in rows[-1], key
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the fresh adapter is the reference
    # periodic held-out eval at step 2 and at the end, MoE telemetry every step
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [2, 3]
    assert all(f"moe/router_entropy/{i}" in rows[-1] for i in range(2))
    for name in ["reward.png", "eval.png", "moe.png", "expert_load.png"]:
        assert (runs["ppo"].plots / name).exists(), name
    table = (runs["ppo"].path / "samples.md").read_text().splitlines()
    assert table[0] == "| step | prompt | completion | reward |" and len(table) == 2 + 3 * 4
    # checkpoints were written atomically; the final state is kept too (a longer run continues it)
    assert sorted(p.name for p in runs["ppo"].checkpoints.iterdir()) == ["step-00000002", "step-00000003"]


def test_eval_writes_a_results_plot(runs):
    assert (runs["eval"].plots / "eval_results.png").stat().st_size > 0


def test_sft_periodic_eval(runs):
    rows = runs["sft"].read_metrics()
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [3, 6]  # micro SFT: 6 steps
    assert (runs["sft"].plots / "eval.png").exists()


def test_eval_results_schema(runs):
    res = json.loads(runs["eval"].eval_results.read_text())
    task = res["tasks"]["arithmetic"]
    assert task["n"] == 16
    assert 0 <= task["accuracy"] <= task["tier/syntax/pass_rate"] + 1e-9 or task["accuracy"] == 0
    assert {"tier/syntax/pass_rate", "tier/logic/pass_rate", "tier/task/pass_rate"} <= set(task)


LOAD_SCRIPT = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, kind = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(path)
if kind == "adapter":
    from peft import PeftConfig, PeftModel
    base = AutoModelForCausalLM.from_pretrained(PeftConfig.from_pretrained(path).base_model_name_or_path)
    model = PeftModel.from_pretrained(base, path)
else:
    model = AutoModelForCausalLM.from_pretrained(path)
ids = tok(["1+2="], return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
assert out.shape[1] > ids.shape[1]
assert not any(m == "r1rl" or m.startswith("r1rl.") for m in sys.modules), "r1rl was imported"
print("ok")
"""


@pytest.mark.parametrize("stage,kind", [("pretrain", "model"), ("sft", "adapter"), ("ppo", "model")])
def test_final_loads_without_r1rl(runs, stage, kind, tmp_path):
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(runs[stage].final), kind],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_sft_labels_cover_completion_only():
    batch = collate([([5, 6, 7, 8, 0], [-100, -100, 7, 8, 0]), ([5, 9, 0], [-100, 9, 0])], pad_id=1)
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, 0], [-100, 9, 0, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_supervised_resume_is_exact(tmp_path):
    """An interrupted pretrain resumed from its checkpoint ends bitwise equal to a straight run."""
    straight = STAGES["pretrain"](_cfg(PretrainConfig, "pretrain", tmp_path / "a", **{"checkpoint.every": 0}))
    resumed_cfg = _cfg(PretrainConfig, "pretrain", tmp_path / "b", **{"checkpoint.every": 10})
    rd = STAGES["pretrain"](resumed_cfg)
    # simulate a crash after step 10: the final model is gone, the step-10 checkpoint remains
    shutil.rmtree(rd.final)
    assert [p.name for p in rd.checkpoints.iterdir()] == ["step-00000010"]
    rd = STAGES["pretrain"](resumed_cfg)
    wa, wb = load_file(straight.final / "model.safetensors"), load_file(rd.final / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    steps = [r["step"] for r in rd.read_metrics()]
    assert steps == sorted(set(steps))  # the resumed run re-logged nothing twice


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_sft_answer_only_fraction(fraction):
    from r1rl.tasks.arithmetic import ArithmeticTask

    records = ArithmeticTask(answer_only_fraction=fraction, train_size=400).records("train")
    full = ArithmeticTask(train_size=400).records("train")  # the same problems, every completion worked
    assert [r["prompt"] for r in records] == [r["prompt"] for r in full]
    short = sum(r["completion"] == f"<answer>{r['answer']}</answer>" for r in records)
    assert short / len(records) == pytest.approx(fraction, abs=0.06)
    assert all(
        r["completion"] in (f["completion"], f"<answer>{r['answer']}</answer>") for r, f in zip(records, full)
    )
    assert records == ArithmeticTask(answer_only_fraction=fraction, train_size=400).records("train")  # seeded


def test_report_to_tensorboard_mirrors_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _cfg(PretrainConfig, "pretrain", tmp_path, **{"report_to": "[tensorboard]", "steps": 10})
    rd = STAGES["pretrain"](cfg)
    events = list((rd.path / "trackers").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    logged = [e.step for e in acc.Scalars("loss")]
    assert logged == [r["step"] for r in rd.read_metrics() if "loss" in r]


def test_unknown_tracker_is_a_config_error(tmp_path):
    from r1rl.errors import UserError

    with pytest.raises(UserError, match="report_to"):
        _cfg(PretrainConfig, "pretrain", tmp_path, report_to="[tensorbord]")


def test_pretrain_with_data_pipeline_sources_filters_dedup_and_validation(tmp_path):
    notes = tmp_path / "notes.txt"
    lines = [f"note {i}: the model adds {i} and {i + 1} to get {2 * i + 1}." for i in range(40)]
    notes.write_text("\n".join(lines + lines[:10] + ["!!!!!!!!!!!!"]) + "\n")  # 10 exact duplicates, 1 junk
    over = {
        "data.sources": "[{type: arithmetic, num_problems: 300}, "
        f"{{type: file, path: '{notes}', text_unit: line}}]",
        "data.weights": "[3, 1]",
        "data.filters": "[{type: symbol_ratio, max_ratio: 0.5}]",
        "data.dedup": "{near: false}",
        "data.val_fraction": 0.1,
        "steps": 6,
    }
    rd = STAGES["pretrain"](_cfg(PretrainConfig, "pretrain", tmp_path / "p", **over))
    stats = json.loads((rd.path / "data_stats.json").read_text())
    assert stats["dedup"]["exact_duplicates"] >= 1 and json.loads((rd.path / "filter_stats.json").read_text())
    assert rd.read_metrics()[-1]["val/loss"] > 0
    # a bad source is one line, before anything is written
    bad = _cfg(PretrainConfig, "pretrain", tmp_path / "q", **{"data.sources": "[{type: fiel, path: x}]"})
    with pytest.raises(UserError, match="did you mean 'file'"):
        STAGES["pretrain"](bad)
    assert not (tmp_path / "q").exists()


def test_a_bf16_base_trains_fp32_adapters(runs, tmp_path):
    """``base_dtype: bfloat16`` (what the GPU recipes use) on the CPU: the frozen base is held in
    bf16, the adapters, their gradients and optimizer state stay fp32, and both stages finish."""
    from r1rl.models.factory import load_merged, torch_dtype
    from r1rl.train.ppo.roles import build_roles

    pre = runs["pretrain"].final
    sft = STAGES["sft"](_cfg(SFTConfig, "sft", tmp_path, model_path=pre, base_dtype="bfloat16", steps=2))
    adapter = load_file(sft.final / "adapter_model.safetensors")
    assert {t.dtype for t in adapter.values()} == {torch.float32}
    cfg = _cfg(PPOConfig, "ppo", tmp_path, model_path=sft.final, base_dtype="bfloat16", steps=1)
    ac = build_roles(cfg, str(sft.final))
    base = {p.dtype for n, p in ac.peft.named_parameters() if "lora_" not in n}
    assert base == {torch.bfloat16} and {t.dtype for t in ac.trainable_state().values()} == {torch.float32}
    STAGES["ppo"](cfg)
    assert load_merged(str(tmp_path / "ppo" / "final")).dtype == torch.bfloat16  # the base's dtype
    assert torch_dtype("auto") is None


@pytest.mark.parametrize("length,expected", [(None, 48), (5, 5)])
def test_sft_periodic_eval_generates_log_eval_max_new_tokens(
    micro_pretrained, tmp_path, monkeypatch, length, expected
):
    """The periodic eval's completion length is an option: long answers are not cut at 48 tokens."""
    import importlib

    sft = importlib.import_module("r1rl.recipes.sft")
    seen = []
    real = sft.evaluate_heldout

    def spy(*args, **kwargs):
        seen.append(kwargs["max_new_tokens"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sft, "evaluate_heldout", spy)
    over = {"steps": 2, "log.eval_every": 2, "log.eval_examples": 4}
    if length is not None:
        over["log.eval_max_new_tokens"] = length
    STAGES["sft"](_cfg(SFTConfig, "sft", tmp_path, model_path=micro_pretrained, **over))
    assert seen == [expected]
