"""Exact and MinHash-LSH near-duplicate removal on crafted documents."""

import json

from r1rl.data.dedup import deduplicate, normalize_text, shingles, text_hash
from r1rl.data.sources import Document

BASE = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch, "
    "drinking coffee and reading yesterday's newspaper about the weather in the valley."
)
ONE_WORD = BASE.replace("coffee", "tea")  # a near duplicate
OTHER = (
    "Gradient descent updates parameters against the gradient of the loss; momentum keeps "
    "a running average of past gradients to damp oscillations across narrow valleys."
)


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def docs(*texts):
    return [Document(t, "s") for t in texts]


def test_normalisation_and_exact_hash():
    assert normalize_text("Ａｂc\u00a0 D\n") == "abc d"  # NFKC folds full-width letters and NBSP
    assert text_hash("Hello  World") == text_hash("hello world\n") != text_hash("hello world!")


def test_exact_dedup_keeps_first_occurrence():
    kept, stats = deduplicate(docs("a b", "A  B", "c", "a b", "c "), near=False)
    assert [d.text for d in kept] == ["a b", "c"]
    assert (stats.documents_in, stats.documents_out, stats.exact_duplicates, stats.near_duplicates) == (
        5,
        2,
        3,
        0,
    )


def test_near_duplicates_removed_distinct_kept():
    assert jaccard(BASE, ONE_WORD) > 0.85 and jaccard(BASE, OTHER) < 0.1  # the crafted inputs
    kept, stats = deduplicate(docs(BASE, OTHER, ONE_WORD), threshold=0.8)
    assert [d.text for d in kept] == [BASE, OTHER]
    assert (stats.exact_duplicates, stats.near_duplicates, stats.documents_out) == (0, 1, 2)
    assert stats.near_examples == [(2, 0)]  # (dropped, kept) input positions
    # exact pass off: an exact copy is still caught by the near pass
    kept, stats = deduplicate(docs(BASE, BASE.upper()), exact=False)
    assert len(kept) == 1 and stats.near_duplicates == 1


def test_similar_but_below_threshold_is_kept():
    half = BASE[: len(BASE) // 2] + OTHER[len(OTHER) // 2 :]
    assert 0.2 < jaccard(BASE, half) < 0.6
    kept, stats = deduplicate(docs(BASE, half), threshold=0.8)
    assert len(kept) == 2 and stats.near_duplicates == 0


def test_order_decides_which_copy_survives_and_is_deterministic():
    kept, _ = deduplicate(docs(ONE_WORD, BASE))
    assert [d.text for d in kept] == [ONE_WORD]
    many = docs(*(f"{BASE} variant {i % 7}" for i in range(30)), OTHER)
    a, sa = deduplicate(many)
    b, sb = deduplicate(many)
    assert [d.text for d in a] == [d.text for d in b] and sa == sb
    assert sa.exact_duplicates == 23 and sa.documents_out == len(a)


def test_stats_written_as_json(tmp_path):
    _, stats = deduplicate(docs(BASE, BASE, ONE_WORD))
    path = stats.write(tmp_path / "run")
    assert json.loads(path.read_text())["near_duplicates"] == 1
    assert path.name == "dedup_stats.json"


def test_word_shingles():
    assert shingles("a b c d", ngram=3, unit="word") == {b"a b c", b"b c d"}
    assert shingles("ab", ngram=5) == {b"ab"}
