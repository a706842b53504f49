"""Generation tasks in the harness: pass@k, prompts as lm-eval renders them, end to end, bad input."""

import ast
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from r1rl.eval.data import default_data_dir
from r1rl.eval.harness import doc_metrics, evaluate, write_results
from r1rl.eval.metrics import mean_stderr, pass_at_k
from r1rl.eval.registry import Task, TaskSpec, get_task, load_task_file

from r1rl.errors import UserError

DOMAIN = ["gsm8k", "humaneval", "mbpp", "scitldr", "cuad"]


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = default_data_dir()
    missing = [
        d for d in ("gsm8k", "humaneval", "mbpp", "scitldr", "cuad_extract") if not (root / d).is_dir()
    ]
    if missing:
        pytest.skip(f"domain data {missing} not found under {root} (set R1RL_DATA_DIR)")
    return root


# --- pass@k (Chen et al. 2021, eq. 1) ---------------------------------------------------------


def test_pass_at_k_by_hand():
    assert pass_at_k(5, 2, 1) == 0.4  # k = 1: the fraction correct, c / n
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2) / C(5,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5) / C(10,5)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(3, 2, 2) == 1.0  # n - c < k: every pair holds a correct sample
    assert pass_at_k(200, 1, 1) == pytest.approx(0.005)


def test_pass_at_k_equals_brute_force():
    """Enumerate every k-subset of n samples (the first c correct): the fraction holding a correct one."""
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(range(n), k))
                hit = sum(any(i < c for i in s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(hit, abs=1e-12), (n, c, k)


def test_pass_at_k_bad_arguments():
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)


def test_doc_metrics_reduce_a_documents_samples():
    scores = {"pass": [1.0, 0.0, 1.0, 0.0], "tests": [1.0, 0.5, 1.0, 0.0]}
    out = doc_metrics(["pass", "pass@1", "pass@2", "pass@4", "tests"], scores)
    assert out == pytest.approx({"pass": 0.5, "pass@1": 0.5, "pass@2": 5 / 6, "pass@4": 1.0, "tests": 0.625})
    assert doc_metrics(["tests@1"], scores) == {"tests@1": 0.5}  # half the tests is not a pass


# --- prompts ------------------------------------------------------------------------------------

MBPP_DOC = {
    "prompt": "Write a function to add two numbers.",
    "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
    "code": "def add(a, b):\n    return a + b",
}
CUAD_DOC = {
    "field": "Governing Law",
    "question": 'Highlight the parts (if any) of this contract related to "Governing Law" that should be '
    "reviewed by a lawyer. Details: Which state/country's law governs the interpretation of the contract?",
    "answer_format": "Name of a US State / non-US Province, Country",
    "context": "This Agreement is governed by the laws of the State of Kansas.",
    "answers": ["Kansas"],
}


def test_gsm8k_prompt():
    task = get_task("gsm8k")
    doc = {
        "question": "Tom has 3 apples and eats one. How many are left?",
        "answer": "3-1=<<3-1=2>>2\n#### 2",
    }
    shot = {"question": "What is 1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}
    prompt = "Question: Tom has 3 apples and eats one. How many are left?\nAnswer:"
    assert task.doc_to_text(doc) == prompt
    assert (
        task.fewshot_context(doc, [shot])
        == "Question: What is 1+1?\nAnswer: 1+1=<<1+1=2>>2\n#### 2\n\n" + prompt
    )
    gen = task.generation
    assert gen.until == ["Question:", "</s>", "<|im_end|>"] and not gen.do_sample and gen.max_gen_toks == 256
    assert task.spec.num_fewshot == 5 and task.eval_split == "test"


def test_humaneval_prompt_is_the_stub():
    task = get_task("humaneval")
    doc = {
        "prompt": 'def inc(x: int) -> int:\n    """Add one."""\n',
        "canonical_solution": "    return x + 1\n",
    }
    assert task.doc_to_text(doc) == doc["prompt"]
    assert task.generation.until == ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
    assert task.generation.max_gen_toks == 1024 and task.spec.metric_list == ["pass@1"]
    sampled = get_task("humaneval_64")
    assert (
        sampled.spec.repeats == 64
        and sampled.generation.temperature == 0.2
        and sampled.generation.top_p == 0.95
    )


def test_mbpp_prompt_and_fewshot():
    task = get_task("mbpp")
    prompt = (
        "You are an expert Python programmer, and here is your task: Write a function to add two numbers. "
        "Your code should pass these tests:\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n"
        "assert add(-1, 1) == 0\n[BEGIN]\n"
    )
    assert task.doc_to_text(MBPP_DOC) == prompt
    assert task.target_text(MBPP_DOC) == "def add(a, b):\n    return a + b\n[DONE]"
    shots = task.fewshot_docs("unused")
    context = task.fewshot_context(MBPP_DOC, shots[:3])
    first = (
        "You are an expert Python programmer, and here is your task: Write a function to find the similar "
        "elements from the given two tuple lists. Your code should pass these tests:\n\n"
        "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
        "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
        "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n[BEGIN]\n"
        "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
        "  return (res) \n[DONE]\n\n"
    )
    assert context.startswith(first) and context.endswith("[DONE]\n\n" + prompt)
    assert context.count("[DONE]\n\n") == 3 and task.spec.num_fewshot == 3


def test_scitldr_prompt():
    task = get_task("scitldr")
    doc = {"source": ["We study X. ", " It works.\n"], "target": ["X works.", "A study of X."]}
    assert task.doc_to_text(doc) == "We study X. It works.\nTL;DR:"
    assert task.target_text(doc) == "X works." and task.generation.until[0] == "\n"


def test_cuad_prompt_and_json_target():
    task = get_task("cuad")
    assert task.doc_to_text(CUAD_DOC) == (
        "Contract:\nThis Agreement is governed by the laws of the State of Kansas.\n\n"
        "Field: Governing Law (Which state/country's law governs the interpretation of the contract?)\n"
        "Format: Name of a US State / non-US Province, Country\n"
        'Answer with a JSON object whose only key is "Governing Law" (null if the contract does not say).\n'
        "JSON:"
    )
    assert task.target_text(CUAD_DOC) == '{"Governing Law": "Kansas"}'
    assert (
        task.target_text({**CUAD_DOC, "answers": ["A & B's <x>", "C"]})
        == '{"Governing Law": ["A & B\'s <x>", "C"]}'
    )


def _lm_eval_yaml(name: str) -> dict:
    lm_eval = pytest.importorskip("lm_eval")
    try:
        from lm_eval.tasks._yaml_loader import load_yaml
    except ImportError:  # pragma: no cover - private module of lm-eval 0.4.x
        pytest.skip("this lm-eval has no lm_eval.tasks._yaml_loader")
    return load_yaml(Path(lm_eval.__file__).parent / "tasks" / name / f"{name}.yaml", resolve_func=False)


@pytest.mark.parametrize("name", ["gsm8k", "humaneval", "mbpp"])
def test_prompt_equals_lm_eval_installed(name):
    """Render lm-eval's own template files with its own renderer; compare prompts, targets, stops."""
    from lm_eval.utils import apply_template

    cfg = _lm_eval_yaml(name)
    task = get_task(name)
    docs = {
        "gsm8k": {"question": "Why?\nBecause.", "answer": "2+2=<<2+2=4>>4\n#### 4"},
        "humaneval": {"prompt": "def f():\n    '''Doc.'''\n", "test": "assert True", "entry_point": "f"},
        "mbpp": {**MBPP_DOC, "text": MBPP_DOC["prompt"]},  # lm-eval's full MBPP calls it `text`
    }
    doc = docs[name]
    assert task.doc_to_text(doc) == apply_template(cfg["doc_to_text"], doc)
    assert task.spec.target_delimiter == cfg.get("target_delimiter", " ")
    assert task.generation.until == cfg["generation_kwargs"]["until"]
    assert task.generation.max_gen_toks == cfg["generation_kwargs"].get("max_gen_toks", 256)
    if name != "humaneval":  # lm-eval's HumanEval target is the test code, used by its metric only
        assert task.target_text(doc) == apply_template(cfg["doc_to_target"], {**doc, "is_fewshot": True})
    if name == "mbpp":  # the written-out few-shot examples are lm-eval's, `text` renamed `prompt`
        utils = (Path(apply_template.__code__.co_filename).parent / "tasks" / "mbpp" / "utils.py").read_text()
        fn = next(n for n in ast.parse(utils).body if getattr(n, "name", "") == "list_fewshot_samples")
        theirs = ast.literal_eval(fn.body[0].value)
        ours = task.fewshot_docs("unused")
        assert [(d["prompt"], d["code"], d["test_list"]) for d in ours] == [
            (d["text"], d["code"], d["test_list"]) for d in theirs
        ]
        assert cfg["fewshot_config"]["sampler"] == "first_n" and cfg["num_fewshot"] == task.spec.num_fewshot


# --- end to end on the micro model --------------------------------------------------------------


@pytest.fixture(scope="module")
def domain_results(model, tok, data_root):
    return evaluate(model, tok, DOMAIN, limit=3, batch_size=4, max_gen_toks=8, data_dir=data_root)


@pytest.mark.parametrize("name", DOMAIN)
def test_domain_task_end_to_end(name, domain_results):
    metrics = get_task(name).spec.metric_list
    m = domain_results["tasks"][name]
    assert set(m) == {*metrics, *(f"{x}_stderr" for x in metrics), "n"} and m["n"] == 3
    records = domain_results["samples"][name]
    assert len(records) == 3
    for r in records:
        assert len(r["completions"]) == len(r["finish"]) == 1
        assert set(r["finish"]) <= {"stop", "eos", "length"}
        assert all(0.0 <= r[x] <= 1.0 for x in metrics)
        assert r["context"].endswith(get_task(name).doc_to_text(r["doc"]))
    for x in metrics:  # the mean over documents, with the mean's standard error
        values = [r[x] for r in records]
        assert m[x] == pytest.approx(np.mean(values))
        se = mean_stderr(values)
        assert (math.isnan(se) and math.isnan(m[f"{x}_stderr"])) or m[f"{x}_stderr"] == pytest.approx(se)
    gen = domain_results["config"]["generation"][name]
    assert gen["max_gen_toks"] == 8 and gen["repeats"] == 1 and gen["do_sample"] is False


def test_domain_results_files(domain_results, tmp_path):
    data = json.loads(write_results(tmp_path, domain_results).read_text())
    assert list(data["tasks"]) == DOMAIN
    assert data["tasks"]["humaneval"].keys() == {"pass@1", "pass@1_stderr", "n"}
    assert data["config"]["num_fewshot_by_task"] == dict.fromkeys(DOMAIN, 0)
    table = (tmp_path / "eval_results.md").read_text()
    for row in [
        "| gsm8k | exact_match_strict |",
        "| humaneval | pass@1 |",
        "| scitldr | rougeL |",
        "| cuad | field_f1 |",
    ]:
        assert row in table
    lines = [json.loads(x) for x in (tmp_path / "eval_samples.jsonl").read_text().splitlines()]
    assert len(lines) == 15 and {"completions", "scores", "context", "doc"} <= set(lines[0])


def test_pass_at_k_end_to_end(model, tok, data_root):
    spec = get_task("humaneval_64").spec.model_dump()
    spec.update(task="humaneval_4", repeats=4, metric_list=["pass@1", "pass@2", "pass@4", "tests"])
    task = Task(TaskSpec.model_validate(spec))  # not registered: other tests list the registry
    kw = dict(limit=2, batch_size=8, max_gen_toks=6, data_dir=data_root, seed=3)
    res = evaluate(model, tok, [task], **kw)
    for r in res["samples"]["humaneval_4"]:
        assert len(r["completions"]) == 4 and len(r["scores"]["pass"]) == 4
        c = sum(v == 1.0 for v in r["scores"]["pass"])
        assert [r["pass@1"], r["pass@2"], r["pass@4"]] == [pass_at_k(4, c, k) for k in (1, 2, 4)]
    assert res["config"]["generation"]["humaneval_4"]["temperature"] == 0.2
    again = evaluate(model, tok, [task], **kw)
    assert [r["completions"] for r in again["samples"]["humaneval_4"]] == [
        r["completions"] for r in res["samples"]["humaneval_4"]
    ]


def test_task_default_fewshot(model, tok, data_root):
    res = evaluate(model, tok, ["mbpp"], limit=1, num_fewshot=None, max_gen_toks=2, data_dir=data_root)
    assert res["config"]["num_fewshot_by_task"] == {"mbpp": 3}
    assert res["samples"]["mbpp"][0]["context"].count("[DONE]") == 3
    # GSM8K's default is 5 shots from train, which the shared copy does not have
    with pytest.raises(UserError, match=r"task 'gsm8k': no local file for split 'train'"):
        evaluate(model, tok, ["gsm8k"], limit=1, num_fewshot=None, data_dir=data_root)


def test_mbpp_test_split_is_a_filter_of_one_file(data_root):
    task = get_task("mbpp")
    test = task.load("test", data_root)
    assert len(test) == 257 and all(11 <= d["task_id"] <= 510 for d in test)
    assert len(task.load("validation", data_root)) + len(task.load("train", data_root)) == 427 - 257 - 7


# --- bad input ----------------------------------------------------------------------------------


def test_missing_data_and_unknown_task(model, tok, tmp_path):
    with pytest.raises(UserError) as e:
        evaluate(model, tok, ["humaneval"], data_dir=tmp_path)
    assert "\n" not in str(e.value)
    assert str(e.value) == f"task 'humaneval': data file not found: {tmp_path}/humaneval/HumanEval.jsonl"
    with pytest.raises(UserError, match=r"unknown eval task 'gsm8' \(did you mean 'gsm8k'\?\)"):
        evaluate(model, tok, ["gsm8"])
    with pytest.raises(UserError, match="max_gen_toks must be >= 1"):
        evaluate(model, tok, ["gsm8k"], max_gen_toks=0)


def test_bad_json_and_columns(tmp_path):
    path = tmp_path / "gsm8k" / "test.jsonl"
    path.parent.mkdir()
    path.write_text('{"question": "q", "answer": "#### 1"}\n{"question": \n')
    with pytest.raises(UserError, match=r"test.jsonl:2: not valid JSON"):
        get_task("gsm8k").load("test", tmp_path)
    path.write_text('{"q": "x", "answer": "#### 1"}\n')
    with pytest.raises(UserError, match=r"no column 'question' \(columns: \['answer', 'idx', 'q'\]\)"):
        get_task("gsm8k").load("test", tmp_path)
    path.write_text("[1, 2]\n")
    with pytest.raises(UserError, match=r"test.jsonl:1: expected a JSON object, found list"):
        get_task("gsm8k").load("test", tmp_path)


GEN = """task: mygen
output_type: generate_until
local: {dir: d, format: jsonl, splits: {test: t.jsonl}}
test_split: test
doc_to_text: "Q: {{q}}\\nA:"
doc_to_target: "{{a}}"
"""


def _write(tmp_path, text):
    p = tmp_path / "t.yaml"
    p.write_text(text)
    return p


def test_generation_yaml_errors(tmp_path):
    cases = [
        ("metric_list: [exact_match_strict]\n", r"generate_until needs a scorer"),
        ("scorer: mth\nmetric_list: [x]\n", r"unknown scorer 'mth' \(did you mean 'math'\?\)"),
        (
            "scorer: math\nmetric_list: [acc]\n",
            r"metric 'acc': scorer 'math' has no output 'acc' \(outputs: ",
        ),
        ("scorer: code\nmetric_list: [pass@5]\n", r"metric 'pass@5' needs 1 <= k <= repeats \(1\)"),
        ("scorer: code\nrepeats: 4\nmetric_list: [pass@4]\n", r"repeats: 4 with greedy decoding"),
        ("scorer: code\nmetric_list: [pass]\ngeneration_kwargs: {do_sample: true}\n", r"temperature > 0"),
        (
            "scorer: math\nmetric_list: [exact_match_strict]\ngeneration_kwargs: {untl: [x]}\n",
            r"'generation_kwargs.untl'",
        ),
    ]
    for extra, message in cases:
        with pytest.raises(UserError, match=message):
            load_task_file(_write(tmp_path, GEN + extra))


def test_custom_generation_task_file(tmp_path, model, tok):
    yaml_text = GEN.replace("splits: {test: t.jsonl}", 'splits: {test: {file: t.jsonl, filter: "n > 1"}}')
    task = load_task_file(_write(tmp_path, yaml_text + "scorer: math\nmetric_list: [exact_match_flexible]\n"))
    assert task.generation.until == ["\n\n"]  # lm-eval's default: the few-shot delimiter
    (tmp_path / "d").mkdir()
    rows = [{"q": "1+1", "a": "#### 2", "n": 1}, {"q": "2+2", "a": "#### 4", "n": 2}]
    (tmp_path / "d" / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        UserError, match=r"scorer 'math' needs a column 'answer' .*map one with scorer_columns"
    ):
        evaluate(model, tok, [task], data_dir=tmp_path)
    mapped = yaml_text + "scorer: math\nscorer_columns: {answer: a}\nmetric_list: [exact_match_flexible]\n"
    res = evaluate(model, tok, [load_task_file(_write(tmp_path, mapped))], data_dir=tmp_path, max_gen_toks=3)
    assert res["tasks"]["mygen"]["n"] == 1 and res["samples"]["mygen"][0]["doc"]["q"] == "2+2"
    bad = load_task_file(_write(tmp_path, mapped.replace('"n > 1"', '"m > 1"')))
    with pytest.raises(UserError, match=r"split 'test' filter failed on .*t.jsonl \('m' is undefined\)"):
        bad.load("test", tmp_path)
