"""CUAD-style extraction rewards: JSON and schema, grounding in the context, field-level F1."""

import datetime
import json
from pathlib import Path

import pytest
from r1rl.rewards.extraction import (
    extract_json,
    extraction_logic,
    extraction_syntax,
    extraction_task,
    field_f1,
    normalize_value,
    parse_date,
)

CUAD = Path("/work/shared/data/cuad_extract/cuad_clause_fields.jsonl")
CONTEXT = (
    "This Services Agreement is dated October 1, 2019. It shall be governed by the laws of the State of "
    "New York. Either party may terminate on ninety (90) days notice. Fee: $1,500.00 per month."
)


@pytest.mark.parametrize(
    "text,obj",
    [
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Here you go: {"law": "New York"} -- done', {"law": "New York"}),
        ('<think>{"draft": 1}</think>{"final": 2}', {"final": 2}),
        ('```json\n{"a": 1,}\n```', None),  # invalid JSON stays invalid
        ("no braces here", None),
    ],
)
def test_extract_json(text, obj):
    assert extract_json(text) == obj


def test_dates_and_values_normalise():
    for text in ["10/1/2019", "2019-10-01", "October 1, 2019", "Oct. 1st, 2019", "1st day of October, 2019"]:
        assert parse_date(text) == datetime.date(2019, 10, 1), text
    assert parse_date("13/45/2019") is None
    assert normalize_value("  NEW   York ") == normalize_value("new york.")
    assert normalize_value("2.50") == normalize_value(2.5) == normalize_value("$2.5")
    assert normalize_value(None) is None and normalize_value(" ") is None


def test_field_f1_by_hand():
    ref = {"date": "10/1/2019", "law": "New York", "parties": ["Acme", "Beta"]}
    assert field_f1(ref, ref) == 1.0
    # 2 of 3 predicted items right, 2 of 4 reference items found: F1 = 2*2/(3+4)
    assert field_f1({"date": "October 1, 2019", "law": "Texas", "parties": ["acme"]}, ref) == pytest.approx(
        4 / 7
    )
    assert field_f1({}, {}) == 1.0 and field_f1({"a": None}, {"a": []}) == 1.0
    assert field_f1("not a dict", ref) == 0.0
    assert (
        field_f1({"Governing_Law": "new york"}, {"governing law": "New York"}) == 1.0
    )  # field names normalised


def test_syntax_scores_schema_conformance():
    schema = {"date": "date", "law": "str", "fee": "number", "parties": "list"}
    completions = [
        '{"date": "10/1/2019", "law": "New York", "fee": 1500, "parties": ["A"]}',
        '{"date": "soon", "law": "New York", "fee": "1500", "parties": ["A"]}',  # 2 wrong types
        '{"date": null, "law": null, "fee": null, "parties": null}',  # null = not in the document
        '{"date": "10/1/2019", "law": "NY", "fee": 1, "parties": [], "extra": 1}',  # an unexpected key
        "date: 10/1/2019",
    ]
    out = extraction_syntax(["p"] * 5, completions, schema=[schema] * 5)
    assert out == [1.0, 0.5, 1.0, 0.8, 0.0]
    assert extraction_syntax(["p"], ['{"x": 1}']) == [1.0]  # no schema: any JSON object
    assert extraction_syntax(["p"], ['{"Law": "x"}'], schema=[json.dumps(["law"])]) == [1.0]


def test_logic_checks_values_against_the_context():
    completions = [
        '{"date": "10/1/2019", "law": "new york", "notice": "90 days", "fee": "$1,500"}',
        '{"date": "10/2/2019", "law": "New York"}',  # a date not in the contract
        '{"law": null}',
        "not json",
    ]
    out = extraction_logic(["p"] * 4, completions, context=[CONTEXT] * 4)
    assert out == [1.0, 0.5, None, 0.0]
    assert extraction_logic(["p"], ['{"law": "x"}']) == [None]  # no context column


def test_task_is_field_f1_against_the_reference_column():
    ref = {"date": "10/1/2019", "law": "New York"}
    completions = ['{"date": "October 1, 2019", "law": "New York"}', '{"date": "October 1, 2019"}', "{}"]
    assert extraction_task(["p"] * 3, completions, answer=[ref] * 3) == pytest.approx([1.0, 2 / 3, 0.0])
    assert extraction_task(["p"], ['{"law": "New York"}'], reference=[json.dumps(ref)]) == pytest.approx(
        [2 / 3]
    )
    with pytest.raises(ValueError, match="'answer' or 'reference' column"):
        extraction_task(["p"], ["{}"])


@pytest.mark.skipif(not CUAD.is_file(), reason="CUAD extraction set not available")
def test_cuad_rows_score_their_own_answers():
    rows = [json.loads(line) for line in CUAD.read_text().splitlines()[:60]]
    n = len(rows)
    cols = {"schema": [[r["field"]] for r in rows], "answer": [r["answers"] for r in rows]}
    gold = [json.dumps({r["field"]: r["answers"][0]}) for r in rows]
    spans = [json.dumps({r["field"]: r["answer_spans"]}) for r in rows]
    assert extraction_syntax(["p"] * n, gold, **cols) == [1.0] * n
    assert extraction_task(["p"] * n, gold, **cols) == [1.0] * n
    assert extraction_logic(["p"] * n, spans, context=[r["context"] for r in rows]) == [1.0] * n
