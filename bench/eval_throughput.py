"""Log-likelihood throughput of r1rl's eval harness, and of lm-evaluation-harness on the same model and task.

Scores SST-2 (the local dev set, first ``--limit`` sentences, both choices each) with a from-scratch
``--preset`` model (or ``--model PATH``). r1rl is timed twice: end to end (``evaluate_task``: prompts,
tokenisation, scoring, metrics) and scoring alone (``loglikelihood`` on the prompt/choice pairs).
If ``lm_eval`` is importable, its ``HFLM.loglikelihood`` scores the same requests built by its own
``sst2`` task, in the same process, and the ratio is printed together with the largest
log-likelihood difference between the two. Each figure is the best of ``--repeats`` runs after a warm-up.

    python bench/eval_throughput.py [--preset tiny] [--limit 200] [--batch-size 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def best_time(fn: Any, repeats: int) -> tuple[float, Any]:
    fn()  # warm-up
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def build(preset: str, docs: list[dict], model_path: str | None) -> tuple[Any, Any]:
    from r1rl.models.factory import build_config, build_model, load_merged, load_tokenizer
    from r1rl.models.tokenizer import train_tokenizer

    if model_path:
        return load_merged(model_path).eval(), load_tokenizer(model_path)
    q = "\nQuestion: Is this sentence positive or negative?\nAnswer: "
    texts = [d["sentence"] + q + ("positive" if d["label"] else "negative") for d in docs]
    tok = train_tokenizer(texts, vocab_size=512)
    cfg = build_config(preset, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return build_model(cfg, seed=0).eval(), tok


def lm_eval_requests(docs: list[dict], tmp: Path, limit: int) -> list[Any]:
    """Requests built by lm-eval's own sst2 task over a JSON copy of ``docs``."""
    import lm_eval
    import yaml
    from lm_eval.api.task import ConfigurableTask

    cfg = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/glue/sst2/default.yaml").read_text())
    (tmp / "validation.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    cfg.pop("tag", None)
    cfg.pop("training_split")  # zero-shot: no train split needed
    files = {"validation": str(tmp / "validation.jsonl")}
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files})
    task = ConfigurableTask(config=cfg)
    task.build_all_requests(limit=limit)
    return task.instances


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--preset", default="tiny", help="r1rl.models.factory.PRESETS size for a from-scratch model"
    )
    ap.add_argument("--model", default=None, help="a saved model (final/) instead of a from-scratch one")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--data-dir", default=None, help="folder holding glue/SST-2/dev.tsv")
    a = ap.parse_args()

    import torch
    from r1rl.eval.harness import evaluate_task
    from r1rl.eval.loglik import loglikelihood
    from r1rl.eval.registry import get_task

    if a.threads:
        torch.set_num_threads(a.threads)
    task = get_task("sst2")
    docs = task.load("validation", a.data_dir)[: a.limit]
    model, tok = build(a.preset, docs, a.model)
    n = len(docs)
    pairs = [p for d in docs for p in task.requests(task.doc_to_text(d), d)]
    print(f"SST-2 dev, {n} examples ({len(pairs)} pairs), preset={a.model or a.preset}, "
          f"params={sum(p.numel() for p in model.parameters()):,}, batch={a.batch_size}, "
          f"threads={torch.get_num_threads()}")  # fmt: skip

    t_e2e, (metrics, _, _) = best_time(
        lambda: evaluate_task(model, tok, task, docs, batch_size=a.batch_size, bootstrap_iters=0), a.repeats
    )
    t_ours, ours = best_time(lambda: loglikelihood(model, tok, pairs, batch_size=a.batch_size), a.repeats)
    print(f"r1rl end to end : {n / t_e2e:8.1f} examples/s  ({t_e2e:.3f} s, acc={metrics['acc']:.3f})")
    print(f"r1rl scoring    : {n / t_ours:8.1f} examples/s  ({t_ours:.3f} s)")
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        print("lm-eval         : not installed (pip install lm_eval to compare)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        insts = lm_eval_requests(docs, Path(tmp), n)
    assert [i.args for i in insts] == pairs, "lm-eval built different requests"
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=a.batch_size, device=str(model.device))
    t_ref, ref = best_time(lambda: lm.loglikelihood(insts, disable_tqdm=True), a.repeats)
    diff = max(abs(x[0] - y[0]) for x, y in zip(ours, ref))
    print(f"lm-eval HFLM    : {n / t_ref:8.1f} examples/s  ({t_ref:.3f} s)")
    print(f"ratio r1rl/lm-eval scoring: {t_ref / t_ours:.2f}x; max |loglik difference| = {diff:.2e}")


if __name__ == "__main__":
    main()
