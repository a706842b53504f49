"""CUAD contract fields: read one field of a condensed contract as JSON; the extraction tiers.

One file of contract fields, split by contract (``source_file``): a seeded ``eval_fraction`` of the
contracts is held out, so no contract is on both sides.
"""

from __future__ import annotations

from typing import Any, Literal

from r1rl.eval import registry as harness
from r1rl.tasks.base import register_task
from r1rl.tasks.benchmark import BenchmarkOptions, BenchmarkTask, Docs, docs, seeded_split, suite

# The eval harness's CUAD task: read one field (a date, the governing law, a term...) and answer as
# JSON; field-level F1 and exact match of the normalised values, by the extraction_task reward
# (r1rl.rewards.extraction: extract_json, field_f1). The rows are derived from CUAD v1 (see
# shared/data/cuad_extract/README.md); lm-evaluation-harness has no such task, so the prompt is
# r1rl's own. One file only: few-shot examples come from it (never the document itself). The
# scorer's columns are the reference values (answers) and the field name.
SPEC: dict[str, Any] = {
    "task": "cuad",
    "reference": "r1rl (no lm-evaluation-harness task); data derived from CUAD v1 master_clauses.csv",
    "output_type": "generate_until",
    "local": {"dir": "cuad_extract", "format": "jsonl", "splits": {"test": "cuad_clause_fields.jsonl"}},
    "test_split": "test",
    "fewshot_split": "test",
    "doc_to_text": "Contract:\n"
    "{{context}}\n"
    "\n"
    "Field: {{field}} ({{question.split('Details: ')[-1]}})\n"
    "Format: {{answer_format}}\n"
    'Answer with a JSON object whose only key is "{{field}}" (null if the contract '
    "does not say).\n"
    "JSON:",
    "doc_to_target": "{{ {field: answers[0] if answers | length == 1 else answers} | json }}",
    "generation_kwargs": {
        "until": ["\n\n", "Contract:", "</s>", "<|im_end|>"],
        "do_sample": False,
        "max_gen_toks": 128,
    },
    "scorer": "extraction",
    "scorer_columns": {"answer": "answers", "schema": "field"},
    "metric_list": ["field_f1", "exact_match"],
}
harness.register_spec(SPEC)


class CuadOptions(BenchmarkOptions):
    """CUAD-derived contract fields answered as JSON; the extraction tiers; split by contract."""

    name: Literal["cuad"] = "cuad"


@register_task("cuad", options=CuadOptions)
def cuad(options: CuadOptions, seed: int) -> BenchmarkTask:
    def load() -> tuple[Docs, Docs, tuple[str, ...]]:
        by_contract = lambda i, d: d["source_file"]  # noqa: E731
        train, held = seeded_split(
            docs(options, "test"), options.eval_fraction, options.split_seed, key=by_contract
        )
        return train, held, ()

    return BenchmarkTask("cuad", load, suite("extraction"), options)
