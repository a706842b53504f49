"""Task definitions: prompts equal lm-evaluation-harness's, few-shot sampling, and bad input."""

import random
from pathlib import Path

import pytest
from r1rl.eval.harness import build_contexts
from r1rl.eval.registry import (
    FewshotSampler,
    Task,
    TaskSpec,
    get_task,
    list_tasks,
    load_task_file,
    register_task,
)

from r1rl.errors import UserError

GLUE = ["cola", "sst2", "mrpc", "qqp", "mnli", "mnli_mismatch", "qnli", "rte", "wnli", "stsb"]

# One document per task and the prompt lm-eval renders for it (lm_eval/tasks/glue/*/default.yaml,
# mnli/utils.py), written out by hand.
EXAMPLES = {
    "cola": ({"sentence": "The cat sat.", "label": 1, "idx": 0},
             "The cat sat.\nQuestion: Does this sentence make sense?\nAnswer:", ["no", "yes"]),
    "sst2": ({"sentence": "it 's fine . ", "label": 1, "idx": 0},
             "it 's fine . \nQuestion: Is this sentence positive or negative?\nAnswer:",
             ["negative", "positive"]),
    "mrpc": ({"sentence1": "A b.", "sentence2": "C d.", "label": 0, "idx": 0},
             "Sentence 1: A b.\nSentence 2: C d.\nQuestion: Do both sentences mean the same thing?\nAnswer:",
             ["no", "yes"]),
    "qqp": ({"question1": "Why?", "question2": "How?", "label": 0, "idx": 0},
            "Question 1: Why?\nQuestion 2: How?\nQuestion: Do both questions ask the same thing?\nAnswer:",
            ["no", "yes"]),
    "mnli": ({"premise": "P here.", "hypothesis": " H there ", "label": 2, "idx": 0},
             "P here.\nQuestion: H there. True, False or Neither?\nAnswer:", ["True", "Neither", "False"]),
    "mnli_mismatch": ({"premise": "P.", "hypothesis": "H ends.", "label": 0, "idx": 0},
                      "P.\nQuestion: H ends. True, False or Neither?\nAnswer:", ["True", "Neither", "False"]),
    "qnli": ({"question": "Who?", "sentence": "Him.", "label": 0, "idx": 0},
             "Who?\nHim.\nQuestion: Does this response answer the question?\nAnswer:", ["yes", "no"]),
    "rte": ({"sentence1": "S1.", "sentence2": "S2.", "label": 1, "idx": 0},
            "S1.\nQuestion: S2. True or False?\nAnswer:", ["True", "False"]),
    "wnli": ({"sentence1": "S1.", "sentence2": "S2.", "label": 1, "idx": 0},
             "S1.\nQuestion: S2. True or False?\nAnswer:", ["False", "True"]),
}  # fmt: skip


def test_all_glue_tasks_are_defined():
    assert set(GLUE) <= set(list_tasks())
    metrics = {t: get_task(t).spec.metric_list for t in GLUE}
    assert metrics["cola"] == ["mcc"] and metrics["mrpc"] == ["acc", "f1"] and metrics["qqp"] == ["acc", "f1"]
    assert metrics["stsb"] == ["pearson", "spearman"]
    assert all(metrics[t] == ["acc"] for t in ["sst2", "mnli", "mnli_mismatch", "qnli", "rte", "wnli"])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_prompt_equals_lm_eval(name):
    doc, prompt, choices = EXAMPLES[name]
    task = get_task(name)
    assert task.doc_to_text(doc) == prompt
    assert task.choices(doc) == choices
    assert task.requests(prompt, doc) == [(prompt, " " + c) for c in choices]
    assert task.spec.target_delimiter == " " and task.spec.fewshot_delimiter == "\n\n"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_prompt_equals_lm_eval_installed(name):
    """Render with lm-eval's own template files and renderer, when lm-eval is installed."""
    lm_eval = pytest.importorskip("lm_eval")
    import yaml
    from lm_eval.utils import apply_template

    folder = Path(lm_eval.__file__).parent / "tasks" / "glue" / name.replace("_mismatch", "")
    doc = EXAMPLES[name][0]
    if name.startswith("mnli"):
        from lm_eval.tasks.glue.mnli.utils import doc_to_text

        expected = doc_to_text(doc)
    else:
        cfg = yaml.safe_load((folder / "default.yaml").read_text())
        expected = apply_template(cfg["doc_to_text"], doc)
        assert cfg["doc_to_choice"] == get_task(name).choices(doc)
    assert get_task(name).doc_to_text(doc) == expected


def test_stsb_prompt_and_fewshot_target():
    task = get_task("stsb")
    doc = {"sentence1": "A.", "sentence2": "B.", "label": 3.6, "idx": 0}
    assert task.doc_to_text(doc) == (
        "Sentence 1: A.\nSentence 2: B.\n"
        "Question: How similar are the two sentences, on a scale from 0 to 5?\nAnswer:"
    )
    assert task.doc_to_target(doc) == 4 and task.doc_to_score(doc) == 3.6
    assert task.choices(doc) == ["0", "1", "2", "3", "4", "5"]


def test_fewshot_context_format():
    task = get_task("sst2")
    shots = [{"sentence": "good . ", "label": 1, "idx": 5}, {"sentence": "bad . ", "label": 0, "idx": 6}]
    doc = {"sentence": "fine . ", "label": 1, "idx": 0}
    q = "\nQuestion: Is this sentence positive or negative?\nAnswer:"
    assert task.fewshot_context(doc, shots) == f"good . {q} positive\n\nbad . {q} negative\n\nfine . {q}"


def test_fewshot_sampler_matches_lm_eval_rule():
    pool = [{"idx": i} for i in range(10)]
    docs = [{"idx": 3}, {"idx": 4}, {"idx": 100}]
    s = FewshotSampler(pool, seed=1234)
    got = [s.sample(2, eval_doc=d) for d in docs]
    # The rule, written out: one Random(seed), sample k+1 per document, drop the document, keep k.
    rnd = random.Random(1234)
    want = [[x for x in rnd.sample(pool, 3) if x != d][:2] for d in docs]
    assert got == want
    assert all(d not in shots for d, shots in zip(docs, got))


def test_fewshot_is_deterministic_and_seeded():
    task = get_task("sst2")
    pool = [{"sentence": f"s{i} . ", "label": i % 2, "idx": i} for i in range(30)]
    docs = pool[:8]  # few-shot from the evaluated split itself: a document never shows itself
    a = build_contexts(task, docs, pool, 3, seed=1234)
    assert a == build_contexts(task, docs, pool, 3, seed=1234)
    assert a != build_contexts(task, docs, pool, 3, seed=1)
    for d, ctx in zip(docs, a):
        assert ctx.count("\n\n") == 3 and ctx.count(d["sentence"]) == 1 and ctx.endswith(task.doc_to_text(d))
    with pytest.raises(UserError, match="needs at least 31 few-shot documents"):
        build_contexts(task, docs, pool, 30, seed=0)


def test_unknown_task_did_you_mean():
    with pytest.raises(UserError) as e:
        get_task("sst-2")
    assert str(e.value) == "unknown eval task 'sst-2' (did you mean 'sst2'?)"
    with pytest.raises(UserError, match=r"\(valid: cola, cuad, gsm8k, humaneval, .*mnli,"):
        get_task("zzzzzz")


def _write(tmp_path, text):
    p = tmp_path / "t.yaml"
    p.write_text(text)
    return p


BASE = """task: mytask
local: {dir: x, splits: {validation: dev.tsv}, columns: {sentence: 0, label: 1}, header: false}
doc_to_text: "{{sentence}}\\nAnswer:"
doc_to_target: label
doc_to_choice: ["a", "b"]
"""


def test_task_yaml_errors(tmp_path):
    with pytest.raises(
        UserError, match=r"unknown config key 'fewshot_splt' \(did you mean 'fewshot_split'\?\)"
    ):
        load_task_file(_write(tmp_path, BASE + "metric_list: [acc]\nfewshot_splt: train\n"))
    with pytest.raises(UserError, match=r"missing required config key 'metric_list'"):
        load_task_file(_write(tmp_path, BASE))
    with pytest.raises(
        UserError, match=r"t.yaml: unknown metric 'accuracy' \(valid: acc, f1, mcc, pearson, spearman\)"
    ):
        load_task_file(_write(tmp_path, BASE + "metric_list: [accuracy]\n"))
    with pytest.raises(UserError, match="metric 'pearson' does not apply to output_type 'multiple_choice'"):
        load_task_file(_write(tmp_path, BASE + "metric_list: [pearson]\n"))
    with pytest.raises(UserError, match="doc_to_text is not a valid template"):
        load_task_file(_write(tmp_path, BASE.replace("{{sentence}}", "{{sentence") + "metric_list: [acc]\n"))


def test_custom_task_file_runs_through_loader(tmp_path):
    task = load_task_file(_write(tmp_path, BASE + "metric_list: [acc]\n"))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "dev.tsv").write_text("hello\t1\n")
    assert task.load("validation", tmp_path) == [{"sentence": "hello", "label": 1, "idx": 0}]
    assert task.doc_to_text({"sentence": "hello"}) == "hello\nAnswer:"
    with pytest.raises(UserError, match="no local file for split 'train'"):
        task.load("train", tmp_path)


def test_register_task_duplicates():
    spec = TaskSpec.model_validate({**get_task("sst2").spec.model_dump(), "task": "sst2_copy"})
    t = register_task(spec)
    assert isinstance(t, Task) and "sst2_copy" in list_tasks() and get_task("sst2_copy") is t
    with pytest.raises(ValueError, match="already registered"):
        register_task(spec)
