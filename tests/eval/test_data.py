"""Loaders on small hand-made files in each GLUE layout (and its quirks), and their one-line errors."""

from pathlib import Path

import pytest
from r1rl.eval.data import TableSpec, load_hub, read_table
from r1rl.eval.registry import get_task

from r1rl.errors import UserError

# Rows made up for these tests, in the layouts described in shared/data/glue/README.md.
FILES = {
    # CoLA: no header; source code, label, author's mark, sentence
    "CoLA/dev.tsv": "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tThe rope stretched the weights over.\n",  # noqa: E501
    "SST-2/dev.tsv": "sentence\tlabel\na fine , quiet film . \t1\nit drags . \t0\n",
    # MRPC: UTF-8 byte-order mark; quotes are text (quoting disabled), even unbalanced ones
    "MRPC/dev.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    '1\t11\t12\tHe said "no.\tHe refused.\n0\t13\t14\tIt rained.\tIt was "sunny".\n',
    # RTE (this copy): a Hub export, CSV-quoted, integer labels, own idx column
    "RTE/dev.tsv": 'sentence1\tsentence2\tlabel\tidx\n"He said ""hi"" twice."\tHe spoke.\t0\t0\nA b.\tC d.\t1\t1\n',  # noqa: E501
    # RTE (GLUE's own layout): string labels, quoting disabled
    "RTE/train.tsv": 'index\tsentence1\tsentence2\tlabel\n0\t"Quoted" start.\tX.\tnot_entailment\n1\tA.\tB.\tentailment\n',  # noqa: E501
    "STS-B/dev.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"  # noqa: E501
    "0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man dances.\tA man is dancing.\t4.750\n"
    "1\tmain-news\theadlines\t2013\t0001\tnone\tnone\tStocks fell.\tIt snowed.\t0.200\n",
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    for rel, text in FILES.items():
        p = tmp_path / "glue" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp_path


def test_cola_headerless(data_dir):
    docs = get_task("cola").load("validation", data_dir)
    assert docs == [
        {"label": 1, "sentence": "The sailors rode the breeze.", "idx": 0},
        {"label": 0, "sentence": "The rope stretched the weights over.", "idx": 1},
    ]


def test_sst2_keeps_trailing_space(data_dir):
    docs = get_task("sst2").load("validation", data_dir)
    assert docs[0] == {"sentence": "a fine , quiet film . ", "label": 1, "idx": 0}


def test_mrpc_bom_and_quotes_are_text(data_dir):
    docs = get_task("mrpc").load("validation", data_dir)
    assert docs[0] == {"label": 1, "sentence1": 'He said "no.', "sentence2": "He refused.", "idx": 0}
    assert docs[1]["sentence2"] == 'It was "sunny".'


def test_rte_hub_export_csv_quoting_and_glue_layout(data_dir):
    task = get_task("rte")
    dev = task.load("validation", data_dir)
    assert dev[0] == {"sentence1": 'He said "hi" twice.', "sentence2": "He spoke.", "label": 0, "idx": 0}
    train = task.load("train", data_dir)  # GLUE layout: string labels mapped as the Hub maps them
    assert [d["label"] for d in train] == [1, 0]
    assert train[0]["sentence1"] == '"Quoted" start.'


def test_stsb_float_scores(data_dir):
    docs = get_task("stsb").load("validation", data_dir)
    assert [d["label"] for d in docs] == [4.75, 0.2]
    assert docs[0]["sentence2"] == "A man is dancing."


def test_missing_file_is_one_line(data_dir):
    missing = [("qnli", "QNLI/dev.tsv"), ("wnli", "WNLI/dev.tsv"), ("qqp", "QQP/dev.tsv"),
               ("mnli", "MNLI/dev_matched.tsv"), ("mnli_mismatch", "MNLI/dev_mismatched.tsv")]  # fmt: skip
    for name, rel in missing:
        task = get_task(name)
        with pytest.raises(UserError) as e:
            task.load(task.spec.validation_split, data_dir)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"task {name!r}: data file not found") and msg.endswith(rel)
    with pytest.raises(UserError, match=r"SST-2/train.tsv$"):
        get_task("sst2").load("train", data_dir)


def test_wrong_columns(tmp_path):
    p = tmp_path / "glue" / "SST-2" / "dev.tsv"
    p.parent.mkdir(parents=True)
    p.write_text("text\tlabel\nok\t1\n")
    with pytest.raises(UserError) as e:
        get_task("sst2").load("validation", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "no column 'sentence'" in msg and "['text', 'label']" in msg


def test_bad_label_and_bad_row(tmp_path):
    p = tmp_path / "glue" / "SST-2" / "dev.tsv"
    p.parent.mkdir(parents=True)
    p.write_text("sentence\tlabel\nok\tpositive\n")
    with pytest.raises(UserError, match=r"dev.tsv:2: label 'positive' is not an integer"):
        get_task("sst2").load("validation", tmp_path)
    p.write_text("sentence\tlabel\nok\t1\textra\n")
    with pytest.raises(UserError, match=r"dev.tsv:2: expected 2 tab-separated fields, found 3"):
        get_task("sst2").load("validation", tmp_path)
    p.write_text("sentence\tlabel\nok\t7\n")  # not a choice index
    with pytest.raises(UserError, match="gold index 7 is not in 0..1"):
        get_task("sst2").load("validation", tmp_path)


def test_hub_docs_with_wrong_columns(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: [{"text": "x", "label": 0}])
    with pytest.raises(UserError, match=r"no column 'sentence' \(columns: \['label', 'text'\]\)"):
        get_task("sst2").load("validation", source="hub")


def test_hub_failure_is_one_line(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError(
            "Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)\nmore detail"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as e:
        get_task("qnli").load("validation", source="hub")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(
        "task 'qnli': could not load nyu-mll/glue/qnli split 'validation'"
    )


def test_hub_really_offline():
    import os

    if os.environ.get("HF_HUB_OFFLINE") != "1":
        pytest.skip("only run where the Hub is switched off")
    with pytest.raises(UserError) as e:
        load_hub("nyu-mll/glue", "wnli", "validation", task="wnli")
    assert "\n" not in str(e.value)


def test_read_table_positions_need_headerless(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("a\tb\n")
    with pytest.raises(UserError, match="must be a position"):
        read_table(TableSpec(path=p, columns={"sentence": "a"}, header=False))
