"""Each quality filter's keep/drop decisions, the per-filter report, and the learned scorer."""

import json
import math

import pytest

from r1rl.data.filters import (
    CharsetFilter,
    LengthFilter,
    PythonSyntaxFilter,
    RepetitionFilter,
    ScoreFilter,
    SymbolRatioFilter,
    apply_filters,
    build_filter,
    duplicate_line_fraction,
    duplicate_ngram_fraction,
    symbol_ratio,
)
from r1rl.data.scoring import CharNGramScorer
from r1rl.data.sources import Document
from r1rl.errors import UserError
from r1rl.tasks.arithmetic import ArithmeticSource


def keeps(f, *texts, source="s"):
    return f([Document(t, source) for t in texts])


def test_length():
    f = LengthFilter(min_chars=3, max_chars=5, min_words=2)
    assert keeps(f, "ab", "a b", "a bcd", "a bcde", "abcd") == [False, True, True, False, False]


def test_symbol_ratio():
    assert symbol_ratio("a+b = c") == pytest.approx(2 / 5)  # spaces are not counted
    assert keeps(SymbolRatioFilter(max_ratio=0.4), "a+b = c", "{[()]}x", "plain words") == [True, False, True]


def test_repetition():
    assert duplicate_line_fraction("x\ny\nx\n\nx") == pytest.approx(2 / 4)
    # "the cat sat" occurs twice: its words cover 6 of 7 words -> chars 3+3+3+3+3+3 of 3+3+3+3+3+3+3
    assert duplicate_ngram_fraction("the cat sat the cat sat on", n=3) == pytest.approx(18 / 20)
    f = RepetitionFilter(max_duplicate_line_fraction=0.3, max_duplicate_ngram_fraction=0.5, ngram=3)
    assert keeps(
        f,
        "one line\nanother line\nthird",  # fine
        "spam\nspam\nspam\nham",  # half the lines repeat
        "buy now buy now buy now buy now",  # repeated 3-grams
    ) == [True, False, False]


def test_charset():
    f = CharsetFilter(min_fraction=0.9)
    assert keeps(f, "plain ascii text", "ünïcödé wörds", "") == [True, False, True]
    digits = CharsetFilter(min_fraction=1.0, allowed="0123456789+-= ")
    assert keeps(digits, "12+3=15", "12+x=15") == [True, False]


def test_python_syntax():
    f = PythonSyntaxFilter()
    assert keeps(f, "def f(x):\n    return x\n", "def f(x) return x", "x = '\\d'\n", "a\0b") == [
        True,
        False,
        True,  # an invalid escape only warns
        False,  # null bytes
    ]


def test_score_filter_with_learned_scorer():
    reference = [d.text for d in ArithmeticSource(200, seed=0)]
    scorer = CharNGramScorer.fit(reference, n=3)
    ppl = scorer(["11+22=33 33-4=29", "the quick brown fox"])
    assert ppl[0] < 30 < 1000 < ppl[1]  # unseen but in-domain text is far more probable
    f = ScoreFilter(scorer, max_score=100.0)
    assert keeps(f, "11+22=33 33-4=29", "the quick brown fox") == [True, False]


def test_ngram_scorer_by_hand():
    # unigram model (n=1), alpha=1: P(c) = (count(c) + 1) / (N + V) with V = |{a, b}| + 1 unknown
    s = CharNGramScorer.fit(["aab"], n=1, alpha=1.0)
    assert s.log_prob("a") == pytest.approx(math.log(3 / 6))
    assert s.log_prob("z") == pytest.approx(math.log(1 / 6))
    assert s(["ab"])[0] == pytest.approx(math.exp(-(math.log(3 / 6) + math.log(2 / 6)) / 2))
    # bigram, Witten-Bell: after "a" came {a, b} (u=2) in 2 events; P(b|a) = (1 + 2 * P0(b)) / (2 + 2)
    s2 = CharNGramScorer.fit(["aab"], n=2, alpha=1.0)
    p0_b = (1 + 1) / (3 + 3)
    assert s2.log_prob("ab") - s2.log_prob("a") == pytest.approx(math.log((1 + 2 * p0_b) / 4))


def test_report_counts_each_filter_in_order_and_respects_scope(tmp_path):
    docs = [
        Document("x", "prose"),  # too short
        Document("ok prose text", "prose"),
        Document("def f(:\n", "code"),  # bad syntax
        Document("def f():\n    pass\n", "code"),
        Document("??? !!!", "prose"),  # symbols
    ]
    filters = [
        LengthFilter(min_chars=3),
        PythonSyntaxFilter(sources=("code",)),
        SymbolRatioFilter(max_ratio=0.5, sources=("prose",)),
    ]
    kept, report = apply_filters(docs, filters)
    assert [d.text for d in kept] == ["ok prose text", "def f():\n    pass\n"]
    assert report.filters == {
        "length": {"judged": 5, "kept": 4, "dropped": 1},
        "python_syntax": {"judged": 2, "kept": 1, "dropped": 1},
        "symbol_ratio": {"judged": 2, "kept": 1, "dropped": 1},
    }
    assert (report.documents_in, report.documents_out) == (5, 2)
    path = report.write(tmp_path)
    assert path == tmp_path / "filter_stats.json"
    assert json.loads(path.read_text())["filters"]["python_syntax"]["dropped"] == 1


def test_build_filter_from_spec_and_errors():
    f = build_filter({"type": "length", "min_chars": 4})
    assert isinstance(f, LengthFilter) and f.min_chars == 4
    with pytest.raises(UserError, match="did you mean 'length'"):
        build_filter({"type": "lenght"})
    with pytest.raises(UserError, match="bad arguments for filter 'charset'"):
        build_filter({"type": "charset", "min_frac": 0.5})
    with pytest.raises(UserError, match="unique"):
        apply_filters([], [LengthFilter(), LengthFilter()])


def test_perplexity_filter_from_a_recipe_spec(tmp_path):
    from r1rl.tasks.arithmetic import ArithmeticTask

    ref = tmp_path / "good.txt"
    ref.write_text("\n".join(ArithmeticTask().corpus(300, seed=0, formatted_fraction=0.0)))
    f = build_filter({"type": "perplexity", "reference": str(ref), "max_score": 20.0}, "data.filters[0]")
    keep = f([Document("7+8=15 15-2=13", "s"), Document("zzz qqq xyzzy wombat", "s")])
    assert keep == [True, False]
    with pytest.raises(UserError, match="reference file not found"):
        build_filter({"type": "perplexity", "reference": str(tmp_path / "no.txt"), "max_score": 3.0}, "f")
