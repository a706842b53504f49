"""An exported model served by transformers' own OpenAI-compatible server (``transformers serve``) answers
concurrent completion requests with exactly ``generate``'s greedy output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1rl.compress.export import export

PROMPTS = ["12+7=", "3+45-6=", "Q: 8+9\nA:", "25-9="]
SERVE = Path(sys.executable).parent / "transformers"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _greedy(path: Path, prompt: str, n: int) -> str:
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, min_new_tokens=n)
    return tokenizer.decode(out[0, ids.input_ids.shape[1] :], skip_special_tokens=True)


@pytest.fixture(scope="module")
def server(micro_pretrained, tmp_path_factory):
    model = export(micro_pretrained, tmp_path_factory.mktemp("serve") / "model").path
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(SERVE), "serve", str(model), "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://localhost:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"transformers serve exited with {proc.returncode}")
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not answer /health in 120 s")
        yield url, model
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_concurrent_completions_equal_greedy_generate(server):
    url, model = server
    body = {"model": str(model), "max_tokens": 8, "temperature": 0}
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        answers = list(pool.map(lambda p: _post(f"{url}/v1/completions", {**body, "prompt": p}), PROMPTS))
    texts = [a["choices"][0]["text"] for a in answers]
    assert texts == [_greedy(model, p, 8) for p in PROMPTS]
    assert all(a["usage"]["completion_tokens"] == 8 for a in answers)
