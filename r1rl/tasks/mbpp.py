"""MBPP: write a Python function from a description and three of its tests, trained with the code tiers.

The sanitized set's ``train`` problems (task ids 601–974) train, its ``test`` problems (11–510) are
held out; each row's asserts run in the sandbox.

For multi-turn episodes in the ``python`` environment (:mod:`r1rl.envs.python`), :func:`tool_record`
makes a problem a chat prompt that invites the model to run its code and the tests before it answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from r1rl.eval import registry as harness
from r1rl.records import Record
from r1rl.tasks.base import register_task
from r1rl.tasks.benchmark import BenchmarkOptions, BenchmarkTask, docs, suite

# The eval harness's MBPP: greedy pass@1 with lm-eval's three written-out few-shot examples (MBPP
# tasks 2-4, from lm_eval/tasks/mbpp/utils.py list_fewshot_samples(), with `text` as `prompt`, taken
# in order). Prompt, target and stop sequence as lm-evaluation-harness's mbpp (v1.0). Differences:
# the problems are the 257 test problems (task_id 11-510) of the *sanitized* MBPP (lm-eval: the 500
# of the full set), whose description field is `prompt` (full MBPP: `text`); the program is the
# completion (its first ``` block if it has one), run with the problem's test_imports and all its
# asserts in r1rl's sandbox by the code_task reward. num_fewshot is lm-eval's default, used when the
# caller passes None; max_gen_toks is lm-eval's HFLM default.
SPEC: dict[str, Any] = {
    "task": "mbpp",
    "reference": "lm-evaluation-harness lm_eval/tasks/mbpp/mbpp.yaml",
    "output_type": "generate_until",
    "hub": {"path": "google-research-datasets/mbpp", "name": "sanitized"},
    "local": {
        "dir": "mbpp",
        "format": "json",
        "splits": {
            "test": {"file": "sanitized-mbpp.json", "filter": "11 <= task_id <= 510"},
            "validation": {"file": "sanitized-mbpp.json", "filter": "511 <= task_id <= 600"},
            "train": {"file": "sanitized-mbpp.json", "filter": "601 <= task_id <= 974"},
        },
    },
    "test_split": "test",
    "num_fewshot": 3,
    "doc_to_text": "You are an expert Python programmer, and here is your task: {{prompt}} Your code "
    "should pass these tests:\n"
    "\n"
    "{{test_list[0]}}\n"
    "{{test_list[1]}}\n"
    "{{test_list[2]}}\n"
    "[BEGIN]\n",
    "doc_to_target": "{{code}}\n[DONE]",
    "target_delimiter": "",
    "generation_kwargs": {"until": ["[DONE]"], "do_sample": False, "max_gen_toks": 256},
    "scorer": "code",
    "metric_list": ["pass@1"],
    "fewshot_samples": [
        {
            "task_id": 2,
            "prompt": "Write a function to find the similar elements from the given two tuple lists.",
            "code": "def similar_elements(test_tup1, test_tup2):\r\n"
            "  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
            "  return (res) ",
            "test_list": [
                "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
            ],
        },
        {
            "task_id": 3,
            "prompt": "Write a python function to identify non-prime numbers.",
            "code": "import math\r\n"
            "def is_not_prime(n):\r\n"
            "    result = False\r\n"
            "    for i in range(2,int(math.sqrt(n)) + 1):\r\n"
            "        if n % i == 0:\r\n"
            "            result = True\r\n"
            "    return result",
            "test_list": [
                "assert is_not_prime(2) == False",
                "assert is_not_prime(10) == True",
                "assert is_not_prime(35) == True",
            ],
        },
        {
            "task_id": 4,
            "prompt": "Write a function to find the largest integers from a given list "
            "of numbers using heap queue algorithm.",
            "code": "import heapq as hq\r\n"
            "def heap_queue_largest(nums,n):\r\n"
            "  largest_nums = hq.nlargest(n, nums)\r\n"
            "  return largest_nums",
            "test_list": [
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
            ],
        },
    ],
}
harness.register_spec(SPEC)


class MbppOptions(BenchmarkOptions):
    """MBPP Python functions from a description and tests; the code tiers, asserts in the sandbox."""

    name: Literal["mbpp"] = "mbpp"
    chat_tools: bool = Field(
        False, description="rows as chat prompts for the python environment (env.environment: python): "
        "the problem, its tests and how to run code; the model answers with a ```python block",
    )  # fmt: skip


class ToolPromptTask(BenchmarkTask):
    """MBPP rows as :func:`tool_record` chat prompts: a turn ends at the end-of-turn token."""

    def record(self, doc: dict[str, Any]) -> dict[str, Any]:
        return tool_record(doc)


@register_task("mbpp", options=MbppOptions)
def mbpp(options: MbppOptions, seed: int) -> BenchmarkTask:
    kind = ToolPromptTask if options.chat_tools else BenchmarkTask
    task = kind("mbpp", lambda: (docs(options, "train"), docs(options, "test"), ()), suite("code"), options)
    if options.chat_tools:
        task.stop = ()
    return task


# The system message of a multi-turn MBPP episode in the ``python`` environment: it names the tools (their
# schemas come with the chat template) and the answer's form, the one the code rewards read (the first
# ```python block: r1rl.rewards.code.extract_code).
TOOL_SYSTEM_PROMPT = (
    "You are an expert Python programmer. You can run code before you answer: run_python(code) runs a "
    "program and shows what it printed or its error; run_tests(code) runs the task's tests on your code "
    "and shows the first failure. Fix your code until the tests pass, then give your final answer: the "
    "whole function in one ```python block."
)
TOOL_COLUMNS = ("task_id", "test_list", "test_imports", "test_setup_code")  # what the env and rewards read


def tool_record(doc: Mapping[str, Any]) -> Record:
    """An MBPP problem as a chat prompt for the ``python`` environment, with the columns its tests need.

    The user message is the problem and its tests, as the benchmark's prompt shows them; the reference
    solution (``code``) is not a column, so neither the environment nor a reward can see it.

    >>> doc = {"task_id": 9, "prompt": "Write sq(x).", "test_list": ["assert sq(2) == 4"], "code": "..."}
    >>> rec = tool_record(doc)
    >>> sorted(rec)
    ['prompt', 'task_id', 'test_list']
    >>> print(rec["prompt"][1]["content"])
    Write sq(x).
    Your code should pass these tests:
    assert sq(2) == 4
    """
    text = doc.get("prompt", doc.get("text"))  # the sanitized set's field, or the full set's
    tests = "\n".join(doc["test_list"])
    user = f"{text}\nYour code should pass these tests:\n{tests}"
    prompt = [{"role": "system", "content": TOOL_SYSTEM_PROMPT}, {"role": "user", "content": user}]
    return {"prompt": prompt, **{k: doc[k] for k in TOOL_COLUMNS if k in doc}}
