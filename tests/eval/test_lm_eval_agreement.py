"""Agreement with lm-evaluation-harness itself, when it is installed (skipped otherwise).

lm-eval's own GLUE task files (prompts, choices, few-shot rules) drive its ``ConfigurableTask``,
pointed at a JSON copy of the same documents (it would otherwise download ``nyu-mll/glue``), and
its ``HFLM`` scores the same in-memory model. Contexts must be identical strings, per-choice
log-likelihoods equal within max(1e-5, 1e-6·|ll|) — float32 noise of batch composition: lm-eval's own
results move by up to ~1e-5 between batch sizes 1 and 8 on this model — and greedy flags and the task
metrics equal.
"""

import collections
import json
from pathlib import Path

import pytest
from r1rl.eval.harness import FEWSHOT_SEED, evaluate_task
from r1rl.eval.registry import get_task

lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed")
from lm_eval.api import metrics as lm_metrics  # noqa: E402
from lm_eval.api.task import ConfigurableTask  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

try:
    from lm_eval.tasks._yaml_loader import load_yaml as lm_load_yaml  # resolves !function and include
except ImportError:  # pragma: no cover - private module of lm-eval 0.4.x
    lm_load_yaml = None

LIMIT = 20
LOCAL = {"cola", "sst2", "mrpc", "rte"}  # dev sets in shared/data/glue; others use made-up documents
FIELDS = {
    "qqp": ("question1", "question2"),
    "mnli": ("premise", "hypothesis"),
    "mnli_mismatch": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "wnli": ("sentence1", "sentence2"),
}
WORDS = "the cat sat on a mat while she reads books that he wrote . it rained yesterday".split()


def _made_up_docs(name: str, n: int) -> list[dict]:
    a, b = FIELDS[name]
    n_labels = len(get_task(name).choices())
    docs = []
    for i in range(n):
        s1 = " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(5 + i % 7))
        s2 = " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(3 + i % 4)) + ("." if i % 2 else " ")
        docs.append({a: s1.capitalize(), b: s2, "label": i % n_labels, "idx": i})
    return docs


def _docs(name: str, glue_dir: Path | None) -> tuple[list[dict], list[dict]]:
    """(evaluated documents, few-shot pool) — disjoint, as dev and train are."""
    if name in LOCAL:
        if glue_dir is None:
            pytest.skip("GLUE data not found")
        docs = get_task(name).load("validation", glue_dir.parent)
        return docs[:LIMIT], docs[LIMIT : LIMIT + 40]
    docs = _made_up_docs(name, LIMIT + 30)
    return docs[:LIMIT], docs[LIMIT:]


@pytest.fixture(scope="module")
def glue_or_none():
    from r1rl.eval.data import default_data_dir

    path = default_data_dir() / "glue"
    return path if path.is_dir() else None


def _lm_eval_task(name: str, tmp: Path, docs: list[dict], pool: list[dict]) -> ConfigurableTask:
    if lm_load_yaml is None:
        pytest.skip("this lm-eval has no lm_eval.tasks._yaml_loader")
    folder = Path(lm_eval.__file__).parent / "tasks" / "glue" / name.replace("_mismatch", "")
    cfg = lm_load_yaml(folder / ("mismatch.yaml" if name.endswith("_mismatch") else "default.yaml"))
    files = {}
    for split, rows in [(cfg["validation_split"], docs), (cfg["training_split"], pool)]:
        files[split] = str(tmp / f"{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg.pop("tag", None)
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files})
    return ConfigurableTask(config=cfg)


@pytest.mark.parametrize("num_fewshot", [0, 2])
@pytest.mark.parametrize(
    "name", ["cola", "sst2", "mrpc", "qqp", "mnli", "mnli_mismatch", "qnli", "rte", "wnli"]
)
def test_agrees_with_lm_eval(name, num_fewshot, model, tok, tmp_path, glue_or_none):
    docs, pool = _docs(name, glue_or_none)
    ref_task = _lm_eval_task(name, tmp_path, docs, pool)
    ref_task.set_config(key="num_fewshot", value=num_fewshot)
    ref_task.set_fewshot_seed(seed=FEWSHOT_SEED)  # as simple_evaluate(fewshot_random_seed=1234)
    ref_task.build_all_requests(limit=LIMIT)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8, device="cpu")
    resps = lm.loglikelihood(ref_task.instances, disable_tqdm=True)
    by_doc = collections.defaultdict(list)
    for inst, r in zip(ref_task.instances, resps):
        by_doc[inst.doc_id].append((inst.idx, inst, r))

    task = get_task(name)
    metrics, records, _ = evaluate_task(model, tok, task, docs, pool, num_fewshot=num_fewshot, batch_size=5)
    assert len(records) == len(by_doc) == LIMIT
    items = collections.defaultdict(list)
    for i, rec in enumerate(records):
        ref = [x for _, _, x in sorted(by_doc[i], key=lambda t: t[0])]
        args = [inst.arguments for _, inst, _ in sorted(by_doc[i], key=lambda t: t[0])]
        assert args == task.requests(rec["context"], rec["doc"])  # same context and continuations
        # float32 noise from batch composition; lm-eval itself moves by up to ~1e-5 between batch sizes
        assert rec["loglikelihoods"] == pytest.approx([ll for ll, _ in ref], abs=1e-5, rel=1e-6)
        assert rec["is_greedy"] == [g for _, g in ref]
        for k, v in ref_task.process_results(by_doc[i][0][1].doc, ref).items():
            items[k].append(v)
    for k in task.spec.metric_list:
        agg = {"acc": lm_metrics.mean, "mcc": lm_metrics.matthews_corrcoef, "f1": lm_metrics.f1_score}[k]
        assert metrics[k] == pytest.approx(float(agg(items[k])), abs=1e-12), k
    if "acc" in metrics:  # lm-eval's analytic stderr
        assert metrics["acc_stderr"] == pytest.approx(lm_metrics.mean_stderr(items["acc"]))
