"""Every stage on tasks other than the built-in default: your own JSONL, GSM8K, MBPP, CUAD, and
checkpoints of other MoE architectures saved with ``save_pretrained``."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1rl.config import EvalConfig, PipelineConfig, PPOConfig, PretrainConfig, SFTConfig, load_config
from r1rl.run import pipeline
from r1rl.run.stages import STAGES
from r1rl.tasks.arithmetic import ArithmeticTask

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"
MICRO_TASK = {"min_operands": 2, "max_operands": 3, "digits": 1}


def _stage(cls, name, out, **over):
    args = [f"output_dir={out}"] + [f"{k}={v}" for k, v in over.items()]
    return STAGES[name](load_config(cls, MICRO / f"{name}.yaml", args))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "pretrain"
    return _stage(PretrainConfig, "pretrain", out).final


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sft_ppo_eval(root, model, **data):
    """SFT → PPO → eval on the micro recipes, with ``data`` overrides (``data.path=...``) or none."""
    over = {f"data.{k}": v for k, v in data.items()}
    sft = _stage(SFTConfig, "sft", root / "sft", model_path=model, **over)
    ppo = _stage(PPOConfig, "ppo", root / "ppo", model_path=sft.final, **{"log.eval_every": 3, **over})
    ev = _stage(EvalConfig, "eval", root / "eval", model_path=ppo.final, **over)
    return sft, ppo, ev


def test_arithmetic_rows_as_jsonl_train_bitwise_like_the_builtin_task(pretrained, tmp_path):
    """The built-in task and the same rows read through data.path: the same batches, weights, scores."""
    task = ArithmeticTask(**MICRO_TASK, seed=0)
    folder = tmp_path / "arith"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", task.records("train"))
    _jsonl(folder / "test.jsonl", task.records("test"))
    builtin = _sft_ppo_eval(tmp_path / "builtin", pretrained)
    own = _sft_ppo_eval(tmp_path / "own", pretrained, path=folder, eval_split="test")
    for a, b in zip(builtin[:2], own[:2]):
        wa = load_file(next(a.final.glob("*.safetensors")))
        wb = load_file(next(b.final.glob("*.safetensors")))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    rows_a, rows_b = builtin[1].read_metrics(), own[1].read_metrics()
    assert [r["reward/mean"] for r in rows_a] == [r["reward/mean"] for r in rows_b]
    assert [r["eval/accuracy"] for r in rows_a if "eval/accuracy" in r] == [
        r["eval/accuracy"] for r in rows_b if "eval/accuracy" in r
    ]
    res_a = json.loads(builtin[2].eval_results.read_text())["tasks"]["arithmetic"]
    res_b = json.loads(own[2].eval_results.read_text())["tasks"]["arith"]
    assert res_a == res_b and res_a["n"] == 16
    samples = [(b / "samples.jsonl").read_text() for b in (builtin[2].path, own[2].path)]
    assert samples[0] == samples[1]


REWARD = '''
import json
ROWS = {r["prompt"]: r for r in map(json.loads, open(DATA))}
def check(prompts, completions, level, tag, **columns):
    """Asserts every sample came with its own row's columns; counts the calls."""
    assert len(level) == len(tag) == len(prompts) == len(completions)
    for p, lv, tg in zip(prompts, level, tag):
        assert ROWS[p]["level"] == lv and ROWS[p]["tag"] == tg, (p, lv, tg)
    with open(COUNT, "a") as f:
        f.write(f"{len(prompts)}\\n")
    return [float(lv) / 3 for lv in level]
'''


def test_every_column_reaches_a_file_reward_in_training_and_eval(pretrained, tmp_path):
    task = ArithmeticTask(**MICRO_TASK, seed=0)
    rows = [
        {"prompt": r["prompt"], "level": i % 4, "tag": f"t{i}"}
        for i, r in enumerate(task.records("train")[:40])
    ]
    data = _jsonl(tmp_path / "mine.jsonl", rows)
    count = tmp_path / "calls.txt"
    plugin = tmp_path / "my_reward.py"
    plugin.write_text(f"DATA = {str(data)!r}\nCOUNT = {str(count)!r}\n" + REWARD)
    rewards = f"{{tiers: [{{name: mine, reward: '{plugin}:check', on_error: raise}}]}}"
    over = {"data.path": data, "rewards": rewards}
    ppo = _stage(PPOConfig, "ppo", tmp_path / "ppo", model_path=pretrained, **over, **{"log.eval_every": 3})
    _stage(EvalConfig, "eval", tmp_path / "eval", model_path=ppo.final, **over)
    calls = [int(n) for n in count.read_text().split()]
    # 3 PPO steps of 4 prompts x 2 samples, the held-out eval at step 3 (4 rows), the eval stage (4 rows)
    assert calls == [8, 8, 8, 4, 4]
    assert ppo.read_metrics()[-1]["reward/tier/mine/pass_rate"] >= 0
    assert f"{plugin}:check" in ppo.config.read_text()  # the resolved config names the tier it ran


BENCHMARKS = {
    # overfit four training problems so PPO's samples parse and the sandbox runs their tests
    "mbpp": ["task={name: mbpp, limit: 4, eval_limit: 4}", "pretrain.steps=300",
             "pretrain.optim.lr=1e-2", "pretrain.model.max_position_embeddings=1024", "sft.steps=60",
             "sft.optim.lr=1e-2", "sft.batch_size=4", "ppo.rollout.max_new_tokens=96",
             "ppo.rollout.temperature=0.5", "eval.max_new_tokens=96"],
    "gsm8k": ["task={name: gsm8k, limit: 8, eval_limit: 4}", "sft.batch_size=4",
              "pretrain.model.max_position_embeddings=1024", "ppo.rollout.max_new_tokens=32"],
    "cuad": ["task={name: cuad, limit: 4, eval_limit: 2}", "ppo.steps=2",
             "pretrain.model.max_position_embeddings=2048", "sft.batch_size=4",
             "ppo.rollout.max_new_tokens=24", "eval.max_new_tokens=24"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_task_pipeline_end_to_end(name, tmp_path):
    from r1rl.eval.data import default_data_dir

    folder = default_data_dir() / {"cuad": "cuad_extract"}.get(name, name)
    if not folder.is_dir():
        pytest.skip(f"{name} data not found under {folder} (set R1RL_DATA_DIR)")
    cfg = load_config(
        PipelineConfig,
        MICRO / "pipeline.yaml",
        [f"output_dir={tmp_path}", *BENCHMARKS[name], "sft.num_examples=4"],
    )
    pipeline.run(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"] == name and list(summary["stages"]) == ["pretrain", "sft", "ppo"]
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    for tier in ("syntax", "logic", "task"):
        assert all(0 <= r[f"reward/tier/{tier}/pass_rate"] <= 1 for r in rows)
        assert f"tier/{tier}/pass_rate" in summary["stages"]["ppo"]["eval"]
    if name == "mbpp":
        assert sum(r["reward/tier/task/programs_run"] for r in rows) > 0  # the sandbox ran the tests
    if name == "gsm8k":  # trained on part of the only split the shared data has; the card says so
        assert json.loads((tmp_path / "ppo" / "task.json").read_text())["notes"] == [
            "contaminated: trained on test"
        ]


# ----------------------------------------------------------------- other architectures from a checkpoint


def _checkpoint(kind, path, tokenizer):
    from transformers import MixtralConfig, OlmoeConfig, OlmoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, intermediate_size=32, max_position_embeddings=256,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                  output_router_logits=True, router_aux_loss_coef=0.01, tie_word_embeddings=True)  # fmt: skip
    if kind == "olmoe":
        model = OlmoeForCausalLM(OlmoeConfig(**common, num_experts=4, num_experts_per_tok=2))
    else:
        config = Qwen3MoeConfig(**common, head_dim=16, moe_intermediate_size=32, num_experts=4,
                                num_experts_per_tok=2, norm_topk_prob=True)  # fmt: skip
        model = Qwen3MoeForCausalLM(config)
    assert MixtralConfig  # the third architecture with the same 3-D expert names (not run here)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["qwen3_moe", "olmoe"])
def test_pipeline_from_a_saved_checkpoint_with_expert_telemetry(kind, tmp_path):
    from r1rl.models.tokenizer import train_tokenizer

    docs = ArithmeticTask(**MICRO_TASK).corpus(500, seed=0)
    start = _checkpoint(kind, tmp_path / "start", train_tokenizer(docs, vocab_size=300))
    over = [f"output_dir={tmp_path / 'run'}", f"model_path={start}", "ppo.moe.routing_replay=true"]
    cfg = load_config(PipelineConfig, MICRO / "pipeline.yaml", over)
    pipeline.run(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert list(summary["stages"]) == ["base", "sft", "ppo"] and not (tmp_path / "run" / "pretrain").exists()
    assert (tmp_path / "run" / "dashboard.png").exists() and summary["dashboard"].endswith("dashboard.png")
    for stage in ("sft", "ppo"):
        rows = [
            json.loads(line) for line in (tmp_path / "run" / stage / "metrics.jsonl").read_text().splitlines()
        ]
        assert all(f"moe/load_cv/{layer}" in rows[-1] for layer in range(2))
    ppo_rows = [
        json.loads(line) for line in (tmp_path / "run" / "ppo" / "metrics.jsonl").read_text().splitlines()
    ]
    assert 0 < ppo_rows[-1]["moe/routing_agreement"] <= 1  # replay recorded and compared the routing
    assert (tmp_path / "run" / "ppo" / "expert_load.jsonl").stat().st_size > 0


def test_routing_replay_is_refused_for_a_sigmoid_router():
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    from r1rl.config import validate
    from r1rl.errors import UserError
    from r1rl.models.moe import check_routing_replay

    config = DeepseekV3Config(vocab_size=64, hidden_size=32, intermediate_size=32, moe_intermediate_size=16,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                              n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
                              first_k_dense_replace=0, q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=8,
                              qk_nope_head_dim=8, v_head_dim=8)  # fmt: skip
    with pytest.raises(UserError, match="needs softmax top-k routers.*DeepseekV3TopkRouter") as e:
        check_routing_replay(DeepseekV3ForCausalLM(config))
    # the key it names is the PPO stage's (ppo.moe.routing_replay in a pipeline), not a moved one
    msg = str(e.value)
    assert msg.startswith("moe.routing_replay: true") and msg.endswith("set moe.routing_replay: false")
    cfg = validate(PPOConfig, {"output_dir": "x", "model_path": "m", "moe": {"routing_replay": True}})
    assert cfg.moe.routing_replay
