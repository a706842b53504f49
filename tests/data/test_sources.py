"""Sources, the weighted mixture and the validation split."""

import inspect
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from r1rl.data.sources import (
    Document,
    FileSource,
    HFDatasetSource,
    Mixture,
    PythonStdlibSource,
    build_source,
    mixture_probabilities,
    split_train_val,
)
from r1rl.errors import UserError
from r1rl.tasks.arithmetic import ArithmeticSource


class ListSource:
    """A source over fixed texts (the Source protocol needs only name, __iter__, size_hint)."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n

    def __iter__(self):
        return (Document(f"{self.name} {i}", self.name) for i in range(self.n))

    def size_hint(self):
        return self.n


@pytest.fixture()
def corpus_dir(tmp_path):
    (tmp_path / "a.txt").write_text("first para\n\nsecond para\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text(
        json.dumps({"text": "j1", "id": 1}) + "\n\n" + '{"text": "j2"}\n'
    )
    pq.write_table(pa.table({"text": ["p1", None, "p2"], "n": [1, 2, 3]}), tmp_path / "sub" / "c.parquet")
    (tmp_path / "ignored.csv").write_text("x,y\n")
    return tmp_path


def test_file_source_reads_txt_jsonl_parquet_in_sorted_order(corpus_dir):
    src = FileSource(str(corpus_dir))
    assert [d.text for d in src] == ["first para\n\nsecond para\n", "j1", "j2", "p1", "p2"]
    assert src.size_hint() == 1 + 2 + 3  # parquet metadata counts rows, including the null one
    by_para = FileSource(str(corpus_dir / "a.txt"), text_unit="paragraph")
    assert [d.text for d in by_para] == ["first para", "second para"]
    by_line = FileSource(str(corpus_dir / "a.txt"), text_unit="line", name="lines")
    assert [d.text for d in by_line] == ["first para", "second para"] and by_line.name == "lines"
    j = list(FileSource(str(corpus_dir / "sub" / "b.jsonl")))
    assert j[0].meta["id"] == 1 and j[0].source == "b.jsonl"


def test_python_files_are_tagged(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    (doc,) = FileSource(str(tmp_path))
    assert doc.meta["lang"] == "python"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: FileSource(str(p / "nope.txt")), "no such file or folder"),
        (lambda p: FileSource(str(p / "ignored.csv")), "unsupported file type '.csv'"),
        (
            lambda p: next(iter(FileSource(str(p / "sub"), text_field="body"))),
            "has no field 'body'",
        ),
        (lambda p: list(FileSource(str(p / "sub" / "c.parquet"), text_field="body")), "has no column 'body'"),
        (lambda p: build_source({"type": "fiel", "path": str(p)}), "did you mean 'file'"),
        (lambda p: build_source({"path": str(p)}), "missing 'type'"),
        (lambda p: build_source({"type": "file", "pth": str(p)}), "bad arguments for source type 'file'"),
    ],
)
def test_bad_input_is_one_line_user_error(corpus_dir, make, message):
    with pytest.raises(UserError) as e:
        make(corpus_dir)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_json_line_names_file_and_line(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(UserError, match=r"x.jsonl:2: not valid JSON"):
        list(FileSource(str(tmp_path / "x.jsonl")))


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(UserError, match="holds no"):
        FileSource(str(tmp_path))


def test_hf_source_loads_local_files_and_checks_the_column(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(5)))
    src = HFDatasetSource("json", name="local", data_files=str(f))
    assert [d.text for d in src] == [f"row {i}" for i in range(5)] and src.size_hint() == 5
    streamed = HFDatasetSource("json", name="local", data_files=str(f), streaming=True)
    assert [d.text for d in streamed] == [f"row {i}" for i in range(5)] and streamed.size_hint() is None
    with pytest.raises(UserError, match="has no column 'content'"):
        list(HFDatasetSource("json", data_files=str(f), text_field="content"))
    with pytest.raises(UserError, match="cannot load dataset"):
        list(HFDatasetSource(str(tmp_path / "missing_dir")))


def test_arithmetic_source_carries_difficulty():
    docs = list(ArithmeticSource(50, min_operands=2, max_operands=4, digits=2, seed=3))
    assert len(docs) == 50
    for d in docs:
        assert d.meta["operands"] == d.text.count("=") + 1  # one worked step per extra operand
        assert 1 <= d.meta["digits"] <= 2
    assert [d.text for d in ArithmeticSource(50, max_operands=4, seed=3)] == [d.text for d in docs]
    assert [d.text for d in ArithmeticSource(50, max_operands=4, seed=4)] != [d.text for d in docs]
    formatted = list(ArithmeticSource(5, formatted_fraction=1.0))
    assert all("<answer>" in d.text for d in formatted)
    with pytest.raises(UserError, match="min_operands"):
        ArithmeticSource(5, min_operands=4, max_operands=3)


def test_stdlib_source_is_python_code():
    src = PythonStdlibSource(max_files=3)
    docs = list(src)
    assert len(docs) == 3 == src.size_hint()
    assert all(d.meta["lang"] == "python" and "test" not in d.meta["path"].split("/") for d in docs)
    with pytest.raises(UserError, match="no standard library folder"):
        PythonStdlibSource(root="/nonexistent")


def test_temperature_probabilities():
    assert mixture_probabilities([1, 3]).tolist() == [0.25, 0.75]
    assert np.allclose(mixture_probabilities([1, 4], temperature=2), [1 / 3, 2 / 3])  # sqrt: 1 : 2
    assert np.allclose(mixture_probabilities([1, 100], temperature=1e9), [0.5, 0.5], atol=1e-6)
    for bad in ([0, 0], [-1, 2], []):
        with pytest.raises(UserError):
            mixture_probabilities(bad)
    with pytest.raises(UserError, match="temperature"):
        mixture_probabilities([1], temperature=0)


def test_mixture_proportions_within_tolerance_and_seeded():
    srcs = [ListSource("a", 10_000), ListSource("b", 10_000), ListSource("c", 10_000)]
    docs, stats = Mixture(srcs, [1, 2, 5], seed=0).take(8000)
    counts = np.array([stats.drawn[n] for n in "abc"])
    assert counts.sum() == 8000 == len(docs)
    # binomial std of a share at n=8000 is at most 0.0056; allow 4 sigma
    assert np.allclose(counts / 8000, [1 / 8, 2 / 8, 5 / 8], atol=0.023)
    again, _ = Mixture(srcs, [1, 2, 5], seed=0).take(8000)
    other, _ = Mixture(srcs, [1, 2, 5], seed=1).take(8000)
    assert [d.text for d in again] == [d.text for d in docs]
    assert [d.text for d in other] != [d.text for d in docs]
    # within a source, documents keep their order
    assert [d.text for d in docs if d.source == "a"][:3] == ["a 0", "a 1", "a 2"]


def test_size_weighting_and_exhaustion():
    srcs = [ListSource("small", 100), ListSource("big", 300)]
    mix = Mixture(srcs, weighting="size", seed=0)
    assert np.allclose(mix.probabilities, [0.25, 0.75])
    docs, stats = mix.take(10_000)  # without cycling: everything once, then stop
    assert len(docs) == 400 and stats.drawn == {"small": 100, "big": 300}
    docs, stats = Mixture(srcs, [1, 1], seed=0, cycle=True).take(1000)
    assert len(docs) == 1000 and stats.epochs["small"] >= 4
    with pytest.raises(UserError, match="unique"):
        Mixture([ListSource("a", 1), ListSource("a", 1)])


def test_split_is_stable_and_by_content():
    docs = [Document(f"document number {i}", "s") for i in range(2000)]
    train, val = split_train_val(docs, 0.2, seed=0)
    assert len(train) + len(val) == 2000 and 330 < len(val) < 470
    assert not {d.text for d in train} & {d.text for d in val}
    # independent of order and of the other documents
    _, val_rev = split_train_val(docs[::-1][:1000], 0.2, seed=0)
    assert {d.text for d in val_rev} == {d.text for d in val} & {d.text for d in docs[1000:]}
    _, val_seed = split_train_val(docs, 0.2, seed=1)
    assert {d.text for d in val_seed} != {d.text for d in val}
    with pytest.raises(UserError, match="val_fraction"):
        split_train_val(docs, 1.0)


def test_arithmetic_source_reproduces_the_pretrain_corpus():
    """The stage can swap its build_corpus for this source without changing a single document."""
    from r1rl.config import PretrainConfig
    from r1rl.train.pretrain import build_corpus

    cfg = PretrainConfig(output_dir="unused", seed=3, data={"num_problems": 300, "formatted_fraction": 0.5})
    src = ArithmeticSource(
        cfg.data.num_problems,
        seed=cfg.seed,
        formatted_fraction=cfg.data.formatted_fraction,
        **cfg.task.model_dump(include=set(inspect.signature(ArithmeticSource).parameters)),
    )
    assert [d.text for d in src] == build_corpus(cfg)
