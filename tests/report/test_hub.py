"""``r1rl push``: the real huggingface_hub client against a local fake Hub (tests/report/fake_hub.py).

One tiny pipeline (pretrain → SFT → PPO, each evaluated) is trained once; every test pushes
from it and checks what reached the server, that failures retry or fail in one line, that the
run directory is never touched, and that the token is never shown or written.
"""

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from r1rl.errors import UserError
from r1rl.report.hub import describe_run, main_push, push_run
from r1rl.report.hub.upload import _retrying

sys.path.insert(0, str(Path(__file__).parent))
from fake_hub import FakeHub  # noqa: E402
from micro_pipeline import FAST, MICRO  # noqa: E402

TOKEN = "hf_r1rlTestToken0123456789DoNotLeak"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from r1rl.config import PipelineConfig, load_config
    from r1rl.run import pipeline

    out = tmp_path_factory.mktemp("hub") / "run"
    pipeline.run(load_config(PipelineConfig, MICRO, [f"output_dir={out}", *FAST]))
    return out


@pytest.fixture
def hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # tests/conftest.py turns it on for every test
    monkeypatch.setattr(
        constants, "HF_HUB_DISABLE_TELEMETRY", True
    )  # no agent-registry lookup at the real Hub
    login = tmp_path / "hf-home"  # keep the developer's own login cache out of the tests
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(login / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(login / "stored_tokens"))
    for var in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    server = FakeHub(TOKEN, user="acme")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.close()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: any write shows up."""
    paths = [root, *sorted(root.rglob("*"))]
    return {
        str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
        for p in paths
    }


def metadata(readme: bytes | str) -> dict:
    text = readme.decode() if isinstance(readme, bytes) else readme
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def model_index_metrics(meta: dict) -> dict[str, float]:
    (entry,) = meta["model-index"]
    return {m["type"]: m["value"] for r in entry["results"] for m in r["metrics"]}


def eval_metrics(run: Path, stage: str) -> dict[str, float]:
    tasks = json.loads((run / "eval" / stage / "eval_results.json").read_text())["tasks"]
    return {k: v for k, v in tasks["arithmetic"].items() if k != "n" and not k.endswith("_stderr")}


def test_pipeline_push_uploads_final_tokenizer_and_card(run, hub, tmp_path):
    before = snapshot(run)
    url = push_run(run, "acme/micro-moe", private=True)
    assert [r.route for r in hub.requests] == ["create", "validate", "preupload", "commit"]
    assert json.loads(hub.calls("create")[0].body) == {
        "name": "micro-moe",
        "organization": "acme",
        "visibility": "private",
    }
    repo = hub.repos["acme/micro-moe"]
    assert repo.private and len(repo.commits) == 1 and url.endswith(repo.commits[0]["oid"])

    files = hub.files("acme/micro-moe")
    final = run / "ppo" / "final"  # a pipeline pushes its last stage
    assert set(files) == {p.name for p in final.iterdir()} | {"README.md"}
    for name, data in files.items():
        if name != "README.md":
            assert data == (final / name).read_bytes(), name
    assert hub.validated == [files["README.md"].decode()]

    meta = metadata(files["README.md"])
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "transformers"
    assert {"r1rl", "moe", "qwen3_moe", "sft", "ppo", "lora"} <= set(meta["tags"])
    assert "base_model" not in meta  # pretrained from scratch
    assert meta["model-index"][0]["name"] == "micro-moe"
    assert model_index_metrics(meta) == eval_metrics(run, "ppo")
    text = files["README.md"].decode()
    assert "from scratch → pretrain → sft → ppo" in text
    for tier, reward in [
        ("syntax", "arithmetic_syntax"),
        ("logic", "arithmetic_logic"),
        ("task", "arithmetic_task"),
    ]:
        assert f"| {tier} | `{reward}` |" in text
    summary = text.split("## Every stage of the pipeline")[1].split("## ")[0]  # from summary.json
    for stage in ["pretrain", "sft", "ppo"]:
        assert f"output_dir: {run / stage}\n" in text  # each stage's resolved config
        assert f"\n| {stage} | " in summary

    # what arrived is a loadable transformers model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    got = tmp_path / "got"
    got.mkdir()
    for name, data in files.items():
        (got / name).write_bytes(data)
    AutoTokenizer.from_pretrained(got)
    AutoModelForCausalLM.from_pretrained(got)
    assert snapshot(run) == before


def test_adapter_push_keeps_the_peft_layout_and_points_at_the_hub_base(run, hub):
    push_run(run / "sft", "acme/micro-sft", base_model="acme/micro-moe-base")
    files = hub.files("acme/micro-sft")
    final = run / "sft" / "final"
    assert set(files) == {p.name for p in final.iterdir()}  # PEFT's placeholder README.md is replaced
    assert files["adapter_model.safetensors"] == (final / "adapter_model.safetensors").read_bytes()
    pushed, local = (
        json.loads(files["adapter_config.json"]),
        json.loads((final / "adapter_config.json").read_text()),
    )
    assert pushed.pop("base_model_name_or_path") == "acme/micro-moe-base"
    assert local.pop("base_model_name_or_path") == str(run / "pretrain" / "final")
    assert pushed == local
    meta = metadata(files["README.md"])
    assert meta["base_model"] == "acme/micro-moe-base" and meta["base_model_relation"] == "adapter"
    assert meta["library_name"] == "peft"
    assert {"r1rl", "moe", "sft", "lora", "peft"} <= set(meta["tags"]) and "ppo" not in meta["tags"]
    assert model_index_metrics(meta) == eval_metrics(run, "sft")  # the sibling eval/sft run


def test_merged_push_is_a_plain_transformers_model(run, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    from r1rl.models.factory import load_merged

    before = snapshot(run)
    out = Path(push_run(run / "sft", "acme/micro-sft-merged", what="merged", dry_run=tmp_path / "dry"))
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= names
    assert not names & {"adapter_config.json", "adapter_model.safetensors"}
    assert (out / "tokenizer.json").read_bytes() == (run / "sft" / "final" / "tokenizer.json").read_bytes()
    pushed = AutoModelForCausalLM.from_pretrained(out).state_dict()
    expected = load_merged(str(run / "sft" / "final")).state_dict()
    assert pushed.keys() == expected.keys()
    assert all(torch.equal(pushed[k], expected[k]) for k in pushed)
    text = (out / "README.md").read_text()
    assert "| weights | merged LoRA |" in text and metadata(text)["library_name"] == "transformers"
    assert "warning" not in capsys.readouterr().err  # a merged model does not depend on a local base
    assert snapshot(run) == before


def test_what_must_match_final(run, tmp_path):
    with pytest.raises(UserError, match="not a PEFT adapter; push it with --what full"):
        push_run(run, "acme/m", what="adapter", dry_run=tmp_path / "a")
    with pytest.raises(UserError, match="is a PEFT adapter;.*--what merged"):
        push_run(run / "sft", "acme/m", what="full", dry_run=tmp_path / "b")
    with pytest.raises(UserError, match="'weights' is not one of full, adapter, merged"):
        push_run(run, "acme/m", what="weights", dry_run=tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_dry_run_writes_the_exact_upload_and_sends_nothing(run, hub, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")  # a dry run needs no token
    dry = tmp_path / "dry"
    assert push_run(run, "acme/micro-moe", dry_run=dry) == str(dry)
    assert hub.requests == []
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push_run(run, "acme/micro-moe")
    assert hub.files("acme/micro-moe") == {p.name: p.read_bytes() for p in dry.iterdir()}
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        push_run(run, "acme/micro-moe", dry_run=dry)


def test_transient_failures_are_retried(run, hub, capsys):
    hub.fail("create", 500)
    hub.fail("commit", "drop", 503)
    push_run(run, "acme/micro-moe", retry_delay=0.01)
    # attempt 1: create 500; 2: commit dropped; 3: commit 503; 4: through
    assert len(hub.calls("create")) == 4 and len(hub.calls("commit")) == 3
    assert len(hub.repos["acme/micro-moe"].commits) == 1
    err = capsys.readouterr().err
    assert "attempt 1/5 failed (HTTP 500)" in err
    assert "attempt 2/5 failed (RemoteProtocolError" in err
    assert "attempt 3/5 failed (HTTP 503)" in err


def test_backoff_is_exponential_bounded_and_only_for_network_errors():
    import httpx2

    waits, calls = [], []

    def flaky():
        calls.append(1)
        raise httpx2.ConnectError("connection refused")

    with pytest.raises(httpx2.ConnectError):
        _retrying(flaky, attempts=6, delay=0.5, max_delay=3.0, sleep=waits.append)
    assert len(calls) == 6 and waits == [0.5, 1.0, 2.0, 3.0, 3.0]

    calls.clear()

    def broken():
        calls.append(1)
        raise ValueError("not a network error")

    with pytest.raises(ValueError):
        _retrying(broken, attempts=6, delay=0.5, max_delay=3.0, sleep=waits.append)
    assert len(calls) == 1


def test_giving_up_is_one_line_and_leaves_the_run_untouched(run, hub):
    before = snapshot(run)
    hub.fail("commit", *["drop"] * 10)
    with pytest.raises(UserError) as e:
        push_run(run, "acme/micro-moe", attempts=3, retry_delay=0.001)
    assert str(e.value).startswith("could not push to acme/micro-moe at http://127.0.0.1:")
    assert "after 3 attempts (RemoteProtocolError" in str(e.value) and "\n" not in str(e.value)
    assert len(hub.calls("commit")) == 3 and hub.repos["acme/micro-moe"].commits == []
    assert snapshot(run) == before


def test_auth_failures_are_one_line_and_not_retried(run, hub, monkeypatch):
    before = snapshot(run)
    monkeypatch.setenv("HF_TOKEN", "hf_wrongToken")
    with pytest.raises(UserError, match=r"rejected the token \(401 Unauthorized\) pushing to acme/m;") as e:
        push_run(run, "acme/m", retry_delay=0.001)
    assert "\n" not in str(e.value) and "hf_wrongToken" not in str(e.value)
    assert [r.route for r in hub.requests] == ["create", "info"]  # create_repo's exist_ok check, then stop
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.writable = False
    with pytest.raises(UserError, match=r"may not write to acme/m \(403 Forbidden\)"):
        push_run(run, "acme/m", retry_delay=0.001)
    assert len(hub.calls("create")) == 2 and not hub.repos
    assert snapshot(run) == before


@pytest.mark.parametrize("repo_id", ["bad--id", "ns/a/b", "with space/model", "ns/model.git", "x" * 97])
def test_bad_repo_id_is_rejected_before_any_network_call(run, hub, repo_id):
    with pytest.raises(UserError, match="bad repo id"):
        push_run(run, repo_id)
    assert hub.requests == []


def test_token_comes_from_env_or_the_login_cache(run, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UserError, match="no Hugging Face token: set HF_TOKEN"):
        push_run(run, "acme/micro-moe")
    assert hub.requests == []
    token_file = Path(constants.HF_TOKEN_PATH)
    token_file.parent.mkdir(parents=True)
    token_file.write_text(TOKEN)  # what `hf auth login` leaves behind
    push_run(run, "acme/micro-moe")
    assert {r.authorization for r in hub.requests} == {f"Bearer {TOKEN}"}


def test_offline_mode_is_a_user_error(run, hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        push_run(run, "acme/micro-moe")
    assert hub.requests == []


def test_the_token_is_never_shown_or_written(run, hub, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    push_run(run, "acme/micro-moe", dry_run=tmp_path / "dry")
    hub.fail("commit", "drop")
    push_run(run, "acme/micro-moe", retry_delay=0.001)
    push_run(run / "sft", "acme/micro-sft", what="merged")
    hub.echo_auth = True  # a server that quotes the Authorization header back in its error
    hub.fail("commit", 400)
    with pytest.raises(UserError) as e:
        push_run(run, "acme/micro-moe")
    assert "(got Bearer ***)" in str(e.value)
    print(e.value)  # as the CLI would
    assert TOKEN not in str(e.value)
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text
    written = [p for root in (run, tmp_path) for p in root.rglob("*") if p.is_file()]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]
    received = [data for repo in hub.repos for data in hub.files(repo).values()] + hub.validated
    assert received and not [
        d for d in received if TOKEN in (d if isinstance(d, str) else d.decode("latin-1"))
    ]


def test_revision_commits_to_a_branch(run, hub):
    push_run(run, "acme/micro-moe", revision="dev")
    push_run(run, "acme/micro-moe", revision="dev")  # the branch exists now: fine
    assert [r.path for r in hub.calls("commit")] == ["/api/models/acme/micro-moe/commit/dev"] * 2
    assert "README.md" in hub.files("acme/micro-moe", "dev") and hub.files("acme/micro-moe", "main") == {}


def rewrite_config(run_dir: Path, **changes) -> None:
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, **changes}, sort_keys=False))


def test_eval_runs_and_stage_dirs_resolve_to_the_model_they_hold(run):
    from_eval = describe_run(run / "eval" / "sft")
    assert from_eval.pushed.path == run / "sft"
    assert [s.stage for s in from_eval.lineage] == ["pretrain", "sft"]
    assert from_eval.eval_results["model"] == str(run / "sft" / "final")
    from_stage, from_root = describe_run(run / "ppo"), describe_run(run)
    assert from_stage == from_root and from_root.summary is not None and from_root.origin is None
    assert [s.stage for s in from_root.lineage] == ["pretrain", "sft", "ppo"]


def test_lineage_of_stages_run_elsewhere(run, tmp_path):
    # a pipeline run with a relative output_dir records relative model paths: found as siblings
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    rewrite_config(moved / "sft", model_path="runs/elsewhere/pretrain/final")
    rewrite_config(moved / "ppo", model_path="runs/elsewhere/sft/final")
    assert [s.path for s in describe_run(moved).lineage] == [moved / s for s in ("pretrain", "sft", "ppo")]
    # a stage run on its own from a Hub model: the card names that model as the base
    solo = tmp_path / "solo" / "sft"
    shutil.copytree(run / "sft", solo)
    rewrite_config(solo, model_path="acme/tiny-moe")
    info = describe_run(solo)
    assert [s.stage for s in info.lineage] == ["sft"] and info.origin == "acme/tiny-moe"
    assert info.summary is None and info.eval_results is None
    out = Path(push_run(solo, "acme/solo", dry_run=tmp_path / "dry"))
    meta = metadata((out / "README.md").read_text())
    assert meta["base_model"] == "acme/tiny-moe" and "model-index" not in meta
    assert "acme/tiny-moe → sft" in (out / "README.md").read_text()
    out = Path(push_run(solo, "acme/solo", dry_run=tmp_path / "dry2", eval_results=run / "eval" / "sft"))
    assert model_index_metrics(metadata((out / "README.md").read_text())) == eval_metrics(run, "sft")
    with pytest.raises(UserError, match="is not an r1rl run directory"):
        describe_run(tmp_path)


def test_cli(run, hub, tmp_path, capsys):
    assert main_push([str(run), "--repo-id", "acme/micro-moe", "--dry-run", str(tmp_path / "dry")]) == 0
    assert hub.requests == []
    capsys.readouterr()
    assert main_push([str(run), "--repo-id", "acme/micro-moe", "--dry-run"]) == 0  # a new folder
    folder = Path(capsys.readouterr().out.split(" to ")[-1].split(";")[0])
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (tmp_path / "dry").iterdir())
    assert hub.requests == []
    assert main_push([str(run), "--repo-id", "acme/micro-moe", "--private", "--message", "first push"]) == 0
    assert hub.repos["acme/micro-moe"].commits[0]["summary"] == "first push"
    capsys.readouterr()
    assert main_push([str(run), "--repo-id", "bad--id"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1rl: error: bad repo id 'bad--id'") and err.count("\n") == 1
    assert main_push([str(tmp_path / "nope"), "--repo-id", "acme/x"]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_push_to_hub_in_a_recipe_pushes_when_the_run_ends(run, hub):
    from r1rl.config import PipelineConfig, PPOConfig, load_config, validate
    from r1rl.run import pipeline
    from r1rl.run.stages import STAGES

    with pytest.raises(UserError, match="needs hub_repo_id"):
        validate(PPOConfig, {"output_dir": "x", "model_path": "m", "push_to_hub": True})
    # a finished pipeline re-run skips every stage, then pushes
    extra = ["push_to_hub=true", "hub_repo_id=acme/p"]
    cfg = load_config(PipelineConfig, MICRO, [f"output_dir={run}", *FAST, *extra])
    pipeline.run(cfg)
    assert "README.md" in hub.files("acme/p") and len(hub.repos["acme/p"].commits) == 1
    # a single stage with push_to_hub pushes its own final/
    ppo_cfg = validate(PPOConfig, {**yaml.safe_load((run / "ppo" / "config.yaml").read_text()),
                                   "push_to_hub": True, "hub_repo_id": "acme/s"})  # fmt: skip
    STAGES["ppo"](ppo_cfg)  # finished already: nothing is retrained, the push still happens
    assert set(hub.files("acme/s")) >= {"README.md", "config.json", "model.safetensors"}
