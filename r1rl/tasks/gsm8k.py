"""GSM8K: grade-school word problems with a numeric answer, trained with the math tiers.

From the Hub, ``train`` trains and ``test`` is held out. Offline only the test split exists, so a
seeded ``1 - eval_fraction`` of it trains and the rest is held out; the task then carries the note
"contaminated: trained on test", which the model card repeats.
"""

from __future__ import annotations

from typing import Any, Literal

from r1rl.eval import registry as harness
from r1rl.tasks.base import register_task
from r1rl.tasks.benchmark import (
    CONTAMINATED,
    BenchmarkOptions,
    BenchmarkTask,
    Docs,
    docs,
    seeded_split,
    suite,
)

# The eval harness's GSM8K. Prompt, stop sequences and few-shot format as lm-evaluation-harness's
# gsm8k (v3.0); scored by the math_task reward (r1rl.rewards.math). Differences from lm-eval's
# exact_match: answers are compared as numbers (18 == 18.00 == $18, 1/2 == 0.5) by numeric_equal,
# not as strings after lm-eval's regexes; "strict" takes the last "#### n" (lm-eval: the first) and
# also accepts <answer>n</answer> and \boxed{n}; "flexible" prefers those marked answers before
# falling back, as lm-eval does, to the last number. The shared copy has no train split: few-shot
# examples need source: hub. num_fewshot is lm-eval's default, used when the caller passes None;
# max_gen_toks is lm-eval's HFLM default.
SPEC: dict[str, Any] = {
    "task": "gsm8k",
    "reference": "lm-evaluation-harness lm_eval/tasks/gsm8k/gsm8k.yaml",
    "output_type": "generate_until",
    "hub": {"path": "openai/gsm8k", "name": "main"},
    "local": {"dir": "gsm8k", "format": "jsonl", "splits": {"test": "test.jsonl"}},
    "test_split": "test",
    "fewshot_split": "train",
    "num_fewshot": 5,
    "doc_to_text": "Question: {{question}}\nAnswer:",
    "doc_to_target": "{{answer}}",
    "target_delimiter": " ",
    "fewshot_delimiter": "\n\n",
    "generation_kwargs": {
        "until": ["Question:", "</s>", "<|im_end|>"],
        "do_sample": False,
        "max_gen_toks": 256,
    },
    "scorer": "math",
    "metric_list": ["exact_match_strict", "exact_match_flexible"],
}
harness.register_spec(SPEC)


class Gsm8kOptions(BenchmarkOptions):
    """GSM8K grade-school word problems; the math tiers; the harness's gsm8k prompts."""

    name: Literal["gsm8k"] = "gsm8k"


@register_task("gsm8k", options=Gsm8kOptions)
def gsm8k(options: Gsm8kOptions, seed: int) -> BenchmarkTask:
    def load() -> tuple[Docs, Docs, tuple[str, ...]]:
        if options.source == "hub":
            return docs(options, "train"), docs(options, "test"), ()
        by_row = lambda i, d: i  # noqa: E731
        train, held = seeded_split(
            docs(options, "test"), options.eval_fraction, options.split_seed, key=by_row
        )
        return train, held, (CONTAMINATED,)

    return BenchmarkTask("gsm8k", load, suite("math"), options)
