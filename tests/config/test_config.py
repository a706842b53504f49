from pathlib import Path

import pytest

from r1rl.config import PipelineConfig, PPOConfig, SFTConfig, apply_overrides, load_config, validate
from r1rl.errors import UserError


def test_unknown_key_suggests_nearest():
    with pytest.raises(UserError, match=r"unknown config key 'optim.lrr' \(did you mean 'lr'\?\)"):
        validate(SFTConfig, {"output_dir": "x", "model_path": "m", "optim": {"lrr": 1}})


def test_mistyped_value_names_key():
    with pytest.raises(UserError, match=r"bad value for 'rollout.temperature'.*'hot'"):
        validate(PPOConfig, {"output_dir": "x", "model_path": "m", "rollout": {"temperature": "hot"}})


@pytest.mark.parametrize(
    "cls,data,old,new",
    [
        (PPOConfig, {"ppo": {"kl_coef": 0.1}}, "ppo.kl_coef", "algorithm.kl_coef"),
        (PPOConfig, {"ppo": {"steps": 3}}, "ppo.steps", "steps"),
        (PPOConfig, {"ppo": {"checkpoint_every": 3}}, "ppo.checkpoint_every", "checkpoint.every"),
        (SFTConfig, {"train": {"lr": 0.1}}, "train.lr", "optim.lr"),
        (SFTConfig, {"answer_only_fraction": 0.5}, "answer_only_fraction", "task.answer_only_fraction"),
    ],
)
def test_a_key_that_moved_names_its_new_place(cls, data, old, new):
    with pytest.raises(UserError, match=rf"config key '{old}' has moved to '{new}'"):
        validate(cls, {"output_dir": "x", "model_path": "m", **data})


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(UserError, match="bad value for 'optim.lr': Input should be a finite number"):
        validate(PPOConfig, {"output_dir": "x", "model_path": "m", "optim": {"lr": value}})


def test_missing_required_key():
    with pytest.raises(UserError, match="missing required config key 'model_path'"):
        validate(SFTConfig, {"output_dir": "x"})


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(SFTConfig, tmp_path / "nope.yaml")


def test_invalid_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(SFTConfig, p)


def test_overrides_parse_yaml_values():
    out = apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=3e-4", "steps=7", "task.operators=+-*"])
    assert out == {"optim": {"lr": 3e-4}, "steps": 7, "task": {"operators": "+-*"}}
    with pytest.raises(UserError, match="key.sub=value"):
        apply_overrides({}, ["optim.lr"])


def test_overrides_validate_like_file_keys(tmp_path):
    p = tmp_path / "sft.yaml"
    p.write_text("output_dir: o\nmodel_path: m\n")
    cfg = load_config(SFTConfig, p, ["steps=3", "optim.lr=0.01"])
    assert cfg.steps == 3 and cfg.optim.lr == 0.01
    with pytest.raises(UserError, match="did you mean 'steps'"):
        load_config(SFTConfig, p, ["step=3"])


def test_pipeline_sections_validated_before_any_stage(tmp_path):
    from r1rl.run.pipeline import stage_configs

    cfg = validate(PipelineConfig, {"output_dir": str(tmp_path), "ppo": {"algorithm": {"kl_coeff": 0.1}}})
    with pytest.raises(
        UserError, match=r"ppo: unknown config key 'algorithm.kl_coeff' \(did you mean 'kl_coef'\?\)"
    ):
        stage_configs(cfg)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("size", ["micro", "tiny"])
@pytest.mark.parametrize("stage", ["pretrain", "sft", "ppo", "eval"])
def test_stage_recipes_match_the_pipeline(size, stage):
    """recipes/configs/<size>/<stage>.yaml runs the same stage as the pipeline recipe's section."""
    import yaml

    from r1rl.run.pipeline import stage_configs

    root = Path(__file__).parents[2] / "recipes" / "configs" / size
    pipeline = stage_configs(load_config(PipelineConfig, root / "pipeline.yaml"))
    key = "eval_ppo" if stage == "eval" else stage
    standalone = validate(type(pipeline[key]), yaml.safe_load((root / f"{stage}.yaml").read_text()))
    assert _training_fields(standalone) == _training_fields(pipeline[key])


def test_the_docs_distill_section_is_the_tiny_distill_recipe():
    """docs/distill.md's ``distill:`` section for the tiny pipeline runs recipes/configs/tiny/distill.yaml."""
    import re

    import yaml

    from r1rl.config import DistillConfig
    from r1rl.run.pipeline import stage_configs

    root = Path(__file__).parents[2]
    block = re.search(
        r"```yaml\n(# appended to recipes/configs/tiny/pipeline.yaml.*?)```",
        (root / "docs" / "distill.md").read_text(),
        re.S,
    )
    tiny = root / "recipes" / "configs" / "tiny"
    pipeline = {**yaml.safe_load((tiny / "pipeline.yaml").read_text()), **yaml.safe_load(block.group(1))}
    from_pipeline = stage_configs(validate(PipelineConfig, pipeline))["distill"]
    standalone = validate(DistillConfig, yaml.safe_load((tiny / "distill.yaml").read_text()))
    assert (from_pipeline.model_path, from_pipeline.teacher_path) == (
        "runs/tiny/pretrain/final",
        "runs/tiny/ppo/final",
    )
    assert _training_fields(standalone) == _training_fields(from_pipeline)


def _training_fields(cfg) -> dict:
    """What decides the result: paths, threads and checkpoint cadence may differ."""

    def drop(d):
        return {k: drop(v) if isinstance(v, dict) else v for k, v in d.items() if k != "checkpoint"}

    return drop(cfg.model_dump(exclude={"output_dir", "model_path", "teacher_path", "threads"}))


def test_a_partly_given_section_keeps_the_stages_own_defaults():
    ppo = validate(PPOConfig, {"output_dir": "x", "model_path": "m", "log": {"eval_every": 5}})
    assert (ppo.log.every, ppo.log.eval_every) == (1, 5)  # PPO logs every step; LogConfig's default is 10
    sft = validate(SFTConfig, {"output_dir": "x", "model_path": "m", "optim": {"warmup_steps": 3}})
    assert (sft.optim.lr, sft.optim.warmup_steps) == (2e-3, 3)  # SFT's learning rate, not OptimConfig's


def test_docs_option_tables_match_the_config_descriptions():
    from r1rl.config.docs import with_tables

    page = (Path(__file__).parents[2] / "docs" / "options.md").read_text()
    assert page.count("<!-- options:") >= 5
    assert with_tables(page) == page, "option tables drifted: python -m r1rl.config.docs docs/options.md"


@pytest.mark.parametrize(
    "algorithm,message",
    [
        ({"importance_sampling_level": "sequence", "loss_agg_mode": "seq-mean-token-mean"},
         "needs one advantage per sequence"),  # the default estimator is gae
        ({"importance_sampling_level": "sequence_token"}, "loss_agg_mode to seq-mean-token-mean"),
        ({"importance_sampling_level": "sequence_token", "loss_agg_mode": "seq-mean-token-mean",
          "dual_clip": 3.0}, "dual_clip caps token ratios"),
    ],
)  # fmt: skip
def test_gspo_options_that_do_not_fit_are_refused(algorithm, message):
    with pytest.raises(UserError, match=message):
        validate(PPOConfig, {"output_dir": "x", "model_path": "m", "algorithm": algorithm})


def test_clip_defaults_follow_the_importance_sampling_level():
    from r1rl.train.ppo.objectives import clip_range

    def algo(**kw):
        return validate(PPOConfig, {"output_dir": "x", "model_path": "m", "algorithm": kw}).algorithm

    gspo = {"advantage_estimator": "grpo", "loss_agg_mode": "seq-mean-token-mean"}
    assert clip_range(algo()) == (0.2, 0.2)
    assert clip_range(algo(clip_eps_high=0.28)) == (0.2, 0.28)
    assert clip_range(algo(importance_sampling_level="sequence", **gspo)) == (3e-4, 4e-4)
    assert clip_range(algo(importance_sampling_level="sequence", clip_eps=1e-3, **gspo)) == (1e-3, 1e-3)


@pytest.mark.parametrize("stage", ["pretrain", "sft"])
def test_the_tool_recipes_are_the_tiny_stages_on_chat_problems(stage):
    """recipes/configs/tools/<stage>.yaml trains as the tiny stage does, on harder problems in chat form."""
    from r1rl.config import PretrainConfig

    root = Path(__file__).parents[2] / "recipes" / "configs"
    cls = PretrainConfig if stage == "pretrain" else SFTConfig
    tools, tiny = (load_config(cls, root / size / f"{stage}.yaml") for size in ("tools", "tiny"))
    assert tools.task.chat and tools.task.digits > tiny.task.digits
    assert _training_fields(tools) | {"task": None} == _training_fields(tiny) | {"task": None}
    with_tools = load_config(cls, root / "tools" / f"{stage}.yaml", ["task.tool_fraction=0.3"])
    assert with_tools.task.tool_fraction == 0.3
