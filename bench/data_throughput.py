"""Data-pipeline throughput on this machine: dedup (exact, MinHash LSH), filters, tokenisation.

The corpus is real code: the standard library's ``.py`` files (``r1rl.data.PythonStdlibSource``)
cut into documents of ``--chars`` characters, so every figure is per document of a known
size. A tenth of the documents are repeated (half verbatim, half with one line changed)
so that both dedup passes have something to find.

    python bench/data_throughput.py [--docs 5000] [--chars 1000] [--threads 1]

Prints a markdown table; ``--json FILE`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any


def corpus(n: int, chars: int, seed: int = 0) -> list[Any]:
    from r1rl.data import Document, PythonStdlibSource

    docs: list[Document] = []
    for d in PythonStdlibSource():
        for i in range(0, len(d.text) - chars + 1, chars):
            docs.append(Document(d.text[i : i + chars], "stdlib"))
        if len(docs) >= n:
            break
    docs = docs[: int(n * 0.9)]
    rng = random.Random(seed)
    for i in range(n - len(docs)):
        src = rng.choice(docs)
        text = src.text if i % 2 else src.text.replace("\n", "\n# edited\n", 1)
        docs.append(Document(text, "stdlib"))
    rng.shuffle(docs)
    return docs


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--chars", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (tokenisation uses processes)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasketch
    import torch

    from r1rl.data import (
        CharsetFilter,
        LengthFilter,
        PythonSyntaxFilter,
        RepetitionFilter,
        SymbolRatioFilter,
        deduplicate,
        tokenize_corpus,
    )
    from r1rl.models.tokenizer import train_tokenizer

    torch.set_num_threads(a.threads)
    docs = corpus(a.docs, a.chars)
    n, mb = len(docs), sum(len(d.text) for d in docs) / 1e6
    rows: list[tuple[str, float, str]] = []

    def add(name: str, seconds: float, extra: str = "") -> None:
        rows.append((name, seconds, extra))
        print(f"  {name}: {n / seconds:,.0f} docs/s  {extra}", flush=True)

    s, (_, st) = timed(lambda: deduplicate(docs, near=False), repeat=3)
    add("dedup exact (BLAKE2b of normalised text)", s, f"removed {st.exact_duplicates}")
    for num_perm in (64, 128):
        near_only = lambda k=num_perm: deduplicate(docs, exact=False, num_perm=k, threshold=0.8)  # noqa: E731
        s, (_, st) = timed(near_only, repeat=2)
        add(f"dedup MinHash LSH, char 5-grams, {num_perm} perms", s, f"removed {st.near_duplicates}")
    s, (_, st) = timed(lambda: deduplicate(docs), repeat=2)
    add("dedup exact + MinHash (128 perms)", s, f"removed {st.exact_duplicates} + {st.near_duplicates}")
    for f in (
        LengthFilter(min_chars=10),
        CharsetFilter(),
        SymbolRatioFilter(),
        RepetitionFilter(),
        PythonSyntaxFilter(),
    ):
        s, keep = timed(lambda f=f: f(docs))
        add(f"filter {f.name}", s, f"kept {sum(keep)}")

    texts = [d.text for d in docs]
    tok = train_tokenizer(texts[:2000], vocab_size=4096)
    n_tokens = sum(len(x) for x in tok(texts[:200], add_special_tokens=False).input_ids) * n / 200
    tok_rows = []
    s, _ = timed(lambda: tok(texts, add_special_tokens=False), repeat=2)
    tok_rows.append(("tokenizer(texts) in-process (Rust, batched)", s))
    for num_proc in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            s, _ = timed(
                lambda num_proc=num_proc, tmp=tmp: tokenize_corpus(texts, tok, tmp, num_proc=num_proc)
            )
            tok_rows.append((f"tokenize_corpus, datasets.map num_proc={num_proc} (cold)", s))
            s, _ = timed(
                lambda num_proc=num_proc, tmp=tmp: tokenize_corpus(texts, tok, tmp, num_proc=num_proc)
            )
            tok_rows.append((f"tokenize_corpus, num_proc={num_proc}, cache hit", s))
    for name, s in tok_rows:
        print(f"  {name}: {n_tokens / s:,.0f} tokens/s", flush=True)

    print(
        f"\n{n} documents of {a.chars} characters ({mb:.1f} MB) of stdlib code; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"datasketch {datasketch.__version__}\n"
    )
    print("| step | documents/s | MB/s | note |\n|---|---|---|---|")
    for name, s, extra in rows:
        print(f"| {name} | {n / s:,.0f} | {mb / s:.2f} | {extra} |")
    print(f"\n| tokenisation ({n_tokens / n:.0f} tokens/document, BPE vocab 4096) | tokens/s | seconds |")
    print("|---|---|---|")
    for name, s in tok_rows:
        print(f"| {name} | {n_tokens / s:,.0f} | {s:.2f} |")
    if a.json:
        figures = {name: {"docs_per_s": n / s} for name, s, _ in rows}
        figures.update({name: {"tokens_per_s": n_tokens / s} for name, s in tok_rows})
        with open(a.json, "w") as f:
            json.dump({"docs": n, "chars": a.chars, "figures": figures}, f, indent=2)


if __name__ == "__main__":
    main()
