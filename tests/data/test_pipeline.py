"""prepare_corpus end to end: mixture of arithmetic, stdlib code and local text; stats on disk."""

import json

from r1rl.data.filters import LengthFilter, PythonSyntaxFilter
from r1rl.data.pipeline import prepare_corpus
from r1rl.data.sources import FileSource, PythonStdlibSource
from r1rl.tasks.arithmetic import ArithmeticSource


def test_prepare_corpus_writes_stats(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("a short note\n\na short note\n\nx\n\nanother longer note here\n")
    (tmp_path / "bad.py").write_text("def broken(:\n")
    code = tmp_path / "lib"
    for i in range(4):
        (code / f"pkg{i}").mkdir(parents=True)
        (code / f"pkg{i}" / "mod.py").write_text(f"def f{i}(x):\n    return x + {i}\n")
    sources = [
        ArithmeticSource(200, seed=0),
        PythonStdlibSource(root=str(code)),  # a stand-in library folder
        FileSource(str(text), text_unit="paragraph", name="notes"),
        FileSource(str(tmp_path / "bad.py"), name="bad_code"),
    ]
    corpus = prepare_corpus(
        sources,
        num_documents=1000,
        weights=[1, 1, 1, 1],
        filters=[LengthFilter(min_chars=3), PythonSyntaxFilter(sources=("stdlib", "bad_code"))],
        dedup={"threshold": 0.9},
        val_fraction=0.1,
        seed=0,
        run_dir=tmp_path / "run",
    )
    stats = json.loads((tmp_path / "run" / "data_stats.json").read_text())
    assert stats["mixture"]["drawn"] == {"arithmetic": 200, "stdlib": 4, "notes": 4, "bad_code": 1}
    assert stats["filters"]["filters"]["length"]["dropped"] == 1  # "x"
    assert stats["filters"]["filters"]["python_syntax"] == {"judged": 5, "kept": 4, "dropped": 1}
    assert stats["dedup"]["exact_duplicates"] == 1  # the repeated note
    assert stats["split"]["train"] + stats["split"]["val"] == stats["dedup"]["documents_out"]
    assert len(corpus.train) == stats["split"]["train"] and corpus.val
    assert (tmp_path / "run" / "filter_stats.json").exists() and (
        tmp_path / "run" / "dedup_stats.json"
    ).exists()
