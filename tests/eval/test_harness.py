"""The harness end to end: real local GLUE dev sets, results files, bad input."""

import json
import math

import pytest
from r1rl.eval.harness import evaluate, markdown_table, write_results

from r1rl.errors import UserError

LOCAL = ["cola", "sst2", "mrpc", "rte", "stsb"]  # the tasks whose dev sets are in shared/data/glue


def test_real_glue_limit_20(model, tok, glue_dir, tmp_path):
    res = evaluate(model, tok, LOCAL, limit=20, batch_size=16, data_dir=glue_dir.parent)
    assert list(res["tasks"]) == LOCAL
    for name, m in res["tasks"].items():
        assert m["n"] == 20 and len(res["samples"][name]) == 20
    assert -1 <= res["tasks"]["cola"]["mcc"] <= 1
    assert 0 <= res["tasks"]["mrpc"]["acc"] <= 1 and 0 <= res["tasks"]["mrpc"]["f1"] <= 1
    assert -1 <= res["tasks"]["stsb"]["pearson"] <= 1 and -1 <= res["tasks"]["stsb"]["spearman"] <= 1
    sst2 = res["tasks"]["sst2"]
    acc = [r["acc"] for r in res["samples"]["sst2"]]
    assert sst2["acc"] == pytest.approx(sum(acc) / 20)
    mean = sst2["acc"]
    assert sst2["acc_stderr"] == pytest.approx(math.sqrt(sum((a - mean) ** 2 for a in acc) / 19 / 20))
    rec = res["samples"]["sst2"][0]
    assert rec["context"].endswith("\nQuestion: Is this sentence positive or negative?\nAnswer:")
    assert len(rec["loglikelihoods"]) == 2 and rec["pred"] in (0, 1) and rec["gold"] == rec["doc"]["label"]
    stsb = res["samples"]["stsb"][0]
    assert 0 <= stsb["pred"] <= 5 and len(stsb["loglikelihoods"]) == 6
    assert res["timing"]["sst2"]["requests"] == 40 and res["timing"]["stsb"]["requests"] == 120

    path = write_results(tmp_path, res)
    data = json.loads(path.read_text())
    assert set(data) == {"model", "tasks", "config", "timing"}
    assert data["tasks"]["mrpc"].keys() == {"acc", "acc_stderr", "f1", "f1_stderr", "n"}
    assert data["config"]["limit"] == 20 and data["config"]["num_fewshot"] == 0
    table = (tmp_path / "eval_results.md").read_text()
    assert "| mrpc | f1 |" in table and "| cola | mcc |" in table
    lines = (tmp_path / "eval_samples.jsonl").read_text().splitlines()
    assert len(lines) == 100 and json.loads(lines[0])["task"] == "cola"


def test_real_glue_fewshot_deterministic(model, tok, glue_dir):
    # The shared copy has no train split, so draw the shots from the dev set itself.
    kw = dict(limit=6, num_fewshot=2, fewshot_split="validation", data_dir=glue_dir.parent)
    a = evaluate(model, tok, ["rte"], **kw)
    b = evaluate(model, tok, ["rte"], **kw)
    assert [r["context"] for r in a["samples"]["rte"]] == [r["context"] for r in b["samples"]["rte"]]
    assert a["tasks"] == b["tasks"]
    for r in a["samples"]["rte"]:
        assert r["context"].count("\n\n") >= 2 and r["context"].count(r["doc"]["sentence1"]) == 1


def test_model_from_path(model, tok, glue_dir, tmp_path):
    model.save_pretrained(tmp_path / "final")
    tok.save_pretrained(tmp_path / "final")
    by_path = evaluate(str(tmp_path / "final"), None, ["sst2"], limit=6, data_dir=glue_dir.parent)
    in_memory = evaluate(model, tok, ["sst2"], limit=6, data_dir=glue_dir.parent)
    assert by_path["model"] == str(tmp_path / "final")
    for a, b in zip(by_path["samples"]["sst2"], in_memory["samples"]["sst2"]):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-5)


def test_missing_train_split_for_fewshot(model, tok, glue_dir):
    with pytest.raises(UserError, match=r"data file not found: .*SST-2/train.tsv"):
        evaluate(model, tok, ["sst2"], num_fewshot=1, data_dir=glue_dir.parent)


def test_bad_input(model, tok, tmp_path):
    with pytest.raises(UserError, match=r"unknown eval task 'sts-b' \(did you mean 'stsb'\?\)"):
        evaluate(model, tok, ["sst2", "sts-b"])
    with pytest.raises(UserError, match=r"task 'qnli': data file not found: .*QNLI/dev.tsv"):
        evaluate(model, tok, ["qnli"], data_dir=tmp_path)
    with pytest.raises(UserError, match="limit must be"):
        evaluate(model, tok, ["sst2"], limit=0)
    with pytest.raises(UserError, match="listed twice"):
        evaluate(model, tok, ["sst2", "sst2"])
    with pytest.raises(UserError, match="unknown source 'web'"):
        evaluate(model, tok, ["sst2"], source="web")


def test_nan_is_written_as_null(tmp_path):
    res = {
        "model": "m",
        "tasks": {"stsb": {"pearson": float("nan"), "pearson_stderr": float("nan"), "n": 1}},
        "config": {},
        "timing": {},
        "samples": {"stsb": [{"pred": float("nan")}]},
    }
    data = json.loads(write_results(tmp_path, res).read_text())
    assert data["tasks"]["stsb"]["pearson"] is None
    assert "| stsb | pearson | — | — | 1 |" in markdown_table(res)
