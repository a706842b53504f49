from pathlib import Path

import pytest

from r1rl.config import PipelineConfig, PPOConfig, SFTConfig, apply_overrides, load_config, validate
from r1rl.errors import UserError


def test_unknown_key_suggests_nearest():
    with pytest.raises(UserError, match=r"unknown config key 'train.lrr' \(did you mean 'lr'\?\)"):
        validate(SFTConfig, {"output_dir": "x", "model_path": "m", "train": {"lrr": 1}})


def test_mistyped_value_names_key():
    with pytest.raises(UserError, match=r"bad value for 'ppo.steps'.*'ten'"):
        validate(PPOConfig, {"output_dir": "x", "model_path": "m", "ppo": {"steps": "ten"}})


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
    out = apply_overrides({"train": {"lr": 1.0}}, ["train.lr=3e-4", "train.steps=7", "task.operators=+-*"])
    assert out == {"train": {"lr": 3e-4, "steps": 7}, "task": {"operators": "+-*"}}
    with pytest.raises(UserError, match="key.sub=value"):
        apply_overrides({}, ["train.lr"])


def test_overrides_validate_like_file_keys(tmp_path):
    p = tmp_path / "sft.yaml"
    p.write_text("output_dir: o\nmodel_path: m\n")
    cfg = load_config(SFTConfig, p, ["train.steps=3"])
    assert cfg.train.steps == 3
    with pytest.raises(UserError, match="did you mean 'steps'"):
        load_config(SFTConfig, p, ["train.step=3"])


def test_pipeline_sections_validated_before_any_stage(tmp_path):
    from r1rl.pipeline import stage_configs

    cfg = validate(PipelineConfig, {"output_dir": str(tmp_path), "ppo": {"ppo": {"kl_coeff": 0.1}}})
    with pytest.raises(
        UserError, match=r"ppo: unknown config key 'ppo.kl_coeff' \(did you mean 'kl_coef'\?\)"
    ):
        stage_configs(cfg)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("size", ["micro", "tiny"])
@pytest.mark.parametrize("stage", ["pretrain", "sft", "ppo", "eval"])
def test_stage_recipes_match_the_pipeline(size, stage):
    """recipes/configs/<size>/<stage>.yaml runs the same stage as the pipeline recipe's section."""
    import yaml

    from r1rl.pipeline import stage_configs

    root = Path(__file__).parents[1] / "recipes" / "configs" / size
    pipeline = stage_configs(load_config(PipelineConfig, root / "pipeline.yaml"))
    key = "eval_ppo" if stage == "eval" else stage
    standalone = validate(type(pipeline[key]), yaml.safe_load((root / f"{stage}.yaml").read_text()))
    assert _training_fields(standalone) == _training_fields(pipeline[key])


def _training_fields(cfg) -> dict:
    """What decides the result: paths, threads and checkpoint cadence may differ."""

    def drop(d):
        return {k: drop(v) if isinstance(v, dict) else v for k, v in d.items() if k != "checkpoint_every"}

    return drop(cfg.model_dump(exclude={"output_dir", "model_path", "threads"}))
