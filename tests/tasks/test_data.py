"""Tasks from a ``data:`` section: loading, splits, column mapping, templates, and every bad input."""

import json

import pytest

from r1rl.config import DataConfig, SFTConfig, validate
from r1rl.errors import UserError
from r1rl.models.chat import render_chat
from r1rl.models.tokenizer import END_OF_TURN, train_tokenizer
from r1rl.tasks.data import DatasetTask, load_splits
from r1rl.train.prepare import hierarchy_of, task_of

ROWS = [
    {"question": f"{i}+{i}=", "solution": f" {2 * i}", "answer": 2 * i, "level": i % 3} for i in range(40)
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _data(**kw):
    return DataConfig(**kw)


@pytest.fixture
def qa(tmp_path):
    return _jsonl(tmp_path / "qa.jsonl", ROWS)


def test_columns_are_mapped_and_every_other_column_stays(qa):
    splits = load_splits(_data(path=str(qa), prompt_column="question", completion_column="solution"))
    rec = splits["train"][0]
    assert set(rec) == {"prompt", "completion", "answer", "level"}
    assert rec["prompt"].endswith("=") and rec["completion"] == f" {rec['answer']}"
    assert len(splits["train"]) == 36 and len(splits["test"]) == 4  # eval_fraction 0.1 of 40


def test_held_out_split_is_seeded_by_split_seed_not_by_the_run(qa):
    cfg = _data(path=str(qa), prompt_column="question")
    a, b = load_splits(cfg, seed=0), load_splits(cfg, seed=7)
    assert a["test"]["prompt"] == b["test"]["prompt"]
    other = load_splits(_data(path=str(qa), prompt_column="question", split_seed=1))
    assert other["test"]["prompt"] != a["test"]["prompt"]
    assert not set(a["test"]["prompt"]) & set(a["train"]["prompt"])


def test_folder_with_named_splits_limit_and_shuffle(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", ROWS[:30])
    _jsonl(folder / "test.jsonl", ROWS[30:])
    cfg = _data(path=str(folder), prompt_column="question", eval_split="test", limit=5, eval_limit=3)
    splits = load_splits(cfg)
    assert splits["train"]["prompt"] == [r["question"] for r in ROWS[:5]]
    assert splits["test"]["prompt"] == [r["question"] for r in ROWS[30:33]]
    shuffled = load_splits(cfg.model_copy(update={"shuffle": True}), seed=1)["train"]["prompt"]
    assert shuffled != splits["train"]["prompt"] and set(shuffled) <= {r["question"] for r in ROWS[:30]}
    assert shuffled == load_splits(cfg.model_copy(update={"shuffle": True}), seed=1)["train"]["prompt"]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_csv_and_parquet_files(tmp_path, suffix):
    import datasets

    path = tmp_path / f"qa.{suffix}"
    ds = datasets.Dataset.from_list(ROWS)
    ds.to_csv(str(path)) if suffix == "csv" else ds.to_parquet(str(path))
    splits = load_splits(_data(path=str(path), prompt_column="question"))
    assert len(splits["train"]) + len(splits["test"]) == 40 and "level" in splits["train"].column_names


def test_prompt_template_renders_from_columns(qa):
    cfg = _data(path=str(qa), prompt_template="Q: {{question}} (level {{level}})\nA:")
    rec = load_splits(cfg)["train"][0]
    assert rec["prompt"].startswith("Q: ") and rec["prompt"].endswith(f"(level {rec['level']})\nA:")


def test_chat_rows_split_into_prompt_and_last_reply(tmp_path):
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
    ]
    path = _jsonl(tmp_path / "chat.jsonl", [{"messages": conv, "answer": 2}] * 10)
    rec = load_splits(_data(path=str(path), messages_column="messages"))["train"][0]
    assert rec["prompt"] == conv[:3] and rec["completion"] == conv[3:] and rec["answer"] == 2


def test_chat_rows_are_pretrained_through_the_chat_template_its_markers_one_token_each(tmp_path):
    conv = [
        {"role": "user", "content": "12+30=?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"name": "add", "arguments": {"a": 12, "b": 30}}],
        },
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "<answer>42</answer>"},
    ]
    path = _jsonl(tmp_path / "chat.jsonl", [{"messages": conv, "answer": 42}] * 10)
    task = DatasetTask(_data(path=str(path), messages_column="messages", system_prompt="Be brief."), [])
    docs = task.corpus(5, seed=0)
    system = {"role": "system", "content": "Be brief."}
    assert len(docs) == 5 and docs[0] == render_chat([system, *conv])
    assert docs[0].startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n12+30=?<|im_end|>")
    assert '<tool_call>{"name": "add", "arguments": {"a": 12, "b": 30}}</tool_call><|im_end|>' in docs[0]
    tok = train_tokenizer(docs * 20, vocab_size=300)
    ids = tok(docs[0], add_special_tokens=False).input_ids  # as pretraining tokenizes its documents
    starts, ends = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids(END_OF_TURN)
    assert ids.count(starts) == 5 and ids.count(ends) == 5 and tok.decode(ids) == docs[0]
    # a chat prompt with a text completion: the completion is the assistant's reply
    text = _jsonl(tmp_path / "pc.jsonl", [{"prompt": conv[:1], "completion": "42", "answer": 42}] * 10)
    doc = DatasetTask(_data(path=str(text)), []).corpus(1, seed=0)[0]
    assert doc == "<|im_start|>user\n12+30=?<|im_end|>\n<|im_start|>assistant\n42<|im_end|>\n"


def test_data_path_replaces_the_named_tasks_rows_but_keeps_its_rewards(qa):
    cfg = validate(SFTConfig, {"output_dir": "x", "model_path": "m", "task": "gsm8k",
                               "data": {"path": str(qa), "prompt_column": "question"}})  # fmt: skip
    task = task_of(cfg)
    assert isinstance(task, DatasetTask) and task.name == "qa"
    assert [t["reward"] for t in task.rewards] == ["math_syntax", "math_logic", "math_task"]
    hierarchy_of(None, task)  # math_task needs 'answer', which the rows have


def test_the_resolved_config_names_the_data_as_the_task_not_the_recipes_task(qa, tmp_path):
    import yaml

    from r1rl.config import PPOConfig
    from r1rl.run.stages import resolved_config
    from r1rl.rundir import RunDir
    from r1rl.train.stage import write_start

    raw = {"output_dir": str(tmp_path / "run"), "model_path": "m", "task": "gsm8k",
           "data": {"path": str(qa), "prompt_column": "question"}}  # fmt: skip
    cfg = validate(PPOConfig, raw)
    written = yaml.safe_load(write_start(RunDir(cfg.output_dir), cfg, task_of(cfg)).config.read_text())
    assert written["task"] is None and written["data"]["name"] == "qa"  # not task: {name: gsm8k, ...}
    assert [t["reward"] for t in written["rewards"]["tiers"]] == ["math_syntax", "math_logic", "math_task"]
    assert json.loads((tmp_path / "run" / "task.json").read_text())["name"] == "qa"
    again = validate(PPOConfig, written)  # config.yaml reads back as the same run: a re-run resumes it
    assert resolved_config(again).model_dump(mode="json") == resolved_config(cfg).model_dump(mode="json")
    assert task_of(again).name == "qa" and len(task_of(again).records("train")) == 36
    with pytest.raises(UserError, match="task is null and data.path is not set"):
        validate(PPOConfig, {**raw, "task": None, "data": None})
    builtin = validate(PPOConfig, {**raw, "data": None})
    assert resolved_config(builtin).task.name == "gsm8k"  # a built-in task is named as before


# --------------------------------------------------------------------------- columns arrive as written

CSV = "prompt,zip,answer,mixed,note\nq0,00042,7,1,NA\nq1,01234,8,2.5,\nq2,99999,9,three,n/a\n"


def _rows(path, **kw):
    splits = load_splits(_data(path=str(path), eval_fraction=1 / 3, **kw))
    return sorted([*splits["train"], *splits["test"]], key=lambda r: r["prompt"])


@pytest.mark.parametrize("suffix,sep", [("csv", ","), ("tsv", "\t")])
def test_text_formats_keep_every_value_a_string_as_written(tmp_path, suffix, sep):
    from r1rl.records import reward_columns

    path = tmp_path / f"rows.{suffix}"
    path.write_text(CSV.replace(",", sep))
    rows = _rows(path)
    assert [r["zip"] for r in rows] == ["00042", "01234", "99999"]  # not 42, 1234, 99999
    assert [r["answer"] for r in rows] == ["7", "8", "9"]
    assert [r["mixed"] for r in rows] == ["1", "2.5", "three"]  # not a float column with a NaN
    assert [r["note"] for r in rows] == ["NA", "", "n/a"]  # not missing values
    assert reward_columns(rows[:1])["zip"] == ["00042"]  # what a reward receives


def test_declared_column_types_are_cast_in_any_format(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(CSV)
    rows = _rows(path, column_types={"answer": "int", "zip": "int"})
    assert [(r["zip"], r["answer"], r["mixed"]) for r in rows] == [
        (42, 7, "1"),
        (1234, 8, "2.5"),
        (99999, 9, "three"),
    ]
    jsonl = _jsonl(tmp_path / "rows.jsonl", [{"prompt": f"q{i}", "answer": str(i)} for i in range(3)])
    assert [r["answer"] for r in _rows(jsonl, column_types={"answer": "float"})] == [0.0, 1.0, 2.0]
    with pytest.raises(UserError, match=r"data.column_types: column 'mixed' of .*rows.csv is not all float"):
        _rows(path, column_types={"mixed": "float"})
    with pytest.raises(UserError, match=r"has no column 'answr' \(did you mean 'answer'\?\)"):
        _rows(path, column_types={"answr": "int"})


def test_jsonl_keeps_its_types(tmp_path):
    rows = [
        {"prompt": f"q{i}", "zip": z, "answer": 7 + i, "ratio": i / 2, "ok": i != 1, "tags": t, "none": None}
        for i, (z, t) in enumerate([("00042", ["a"]), ("01234", []), ("99999", ["b", "c"])])
    ]
    got = _rows(_jsonl(tmp_path / "rows.jsonl", rows))
    assert got == rows


def test_a_csv_folder_keeps_strings_too(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.csv").write_text(CSV)
    (folder / "test.csv").write_text(CSV)
    splits = load_splits(_data(path=str(folder), eval_split="test"))
    assert splits["train"]["zip"] == splits["test"]["zip"] == ["00042", "01234", "99999"]


# --------------------------------------------------------------------------- bad data: one line each


def _error(cfg_data, tmp_path=None, rewards=None):
    cfg = validate(SFTConfig, {"output_dir": "x", "model_path": "m", "data": cfg_data})
    with pytest.raises(UserError) as e:
        hierarchy_of(rewards, task_of(cfg))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_missing_file(tmp_path):
    assert "no such file or folder" in _error({"path": str(tmp_path / "nope.jsonl")})


def test_unknown_column_suggests_the_real_ones(qa):
    msg = _error({"path": str(qa), "prompt_column": "questoin"})
    assert "no column 'questoin'" in msg and "did you mean 'question'" in msg


def test_empty_split(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", ROWS)
    (folder / "test.jsonl").write_text("")
    assert "empty" in _error({"path": str(folder), "prompt_column": "question", "eval_split": "test"})


def test_unknown_split_suggests_one(qa):
    assert "did you mean 'train'" in _error({"path": str(qa), "prompt_column": "question", "split": "trian"})


def test_prompt_that_is_neither_text_nor_messages(tmp_path):
    path = _jsonl(tmp_path / "bad.jsonl", [{"prompt": i, "answer": i} for i in range(20)])
    assert "the prompt is int; expected text or a list" in _error({"path": str(path)})


def test_held_out_fraction_that_leaves_nothing(tmp_path):
    path = _jsonl(tmp_path / "few.jsonl", ROWS[:3])
    msg = _error({"path": str(path), "prompt_column": "question", "eval_fraction": 0.1})
    assert "leaves no held-out rows" in msg


def test_reward_column_the_data_lacks(tmp_path):
    path = _jsonl(tmp_path / "noanswer.jsonl", [{"prompt": r["question"]} for r in ROWS])
    msg = _error({"path": str(path)})  # the default task's arithmetic_task needs 'answer'
    assert "reward 'arithmetic_task' needs a column 'answer'" in msg and "noanswer.jsonl" in msg


def test_code_reward_names_its_alternative_columns(qa):
    from r1rl.config import RewardsConfig

    rewards = RewardsConfig(tiers=[{"name": "task", "reward": "code_task"}])
    msg = _error({"path": str(qa), "prompt_column": "question"}, rewards=rewards)
    assert "needs a column 'test_list' or 'test'" in msg


def test_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "a"\n{oops\n')
    assert f"{path} line 1 is not valid JSON" in _error({"path": str(path)})


def test_a_malformed_line_or_an_empty_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1=", "answer": 2}\n{"question": "2+2=", "answer": 4\n{"question": "x"}\n')
    with pytest.raises(UserError) as e:
        load_splits(_data(path=str(bad), prompt_column="question"))
    assert str(e.value).startswith(f"data.path: {bad} line 2 is not valid JSON (") and "\n" not in str(
        e.value
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match=f"^data.path: {empty} is empty$"):
        load_splits(_data(path=str(empty), prompt_column="question"))
