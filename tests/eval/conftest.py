"""A micro Qwen3-MoE and a BPE tokenizer trained on GLUE-style prompts, made in-process in under a second."""

from pathlib import Path

import pytest
from r1rl.eval.data import default_data_dir

from r1rl.models.factory import build_config, build_model
from r1rl.models.tokenizer import train_tokenizer

SENTENCES = [
    "the film is a charming and often affecting journey .",
    "a gorgeous , witty , seductive movie .",
    "unflinchingly bleak and desperate",
    "it is not a good movie at all .",
    "The cat sat on the mat.",
    "Yesterday the committee said the plan would fail.",
    "She reads books that he wrote.",
]
PROMPTS = [
    "{s}\nQuestion: Is this sentence positive or negative?\nAnswer: positive",
    "{s}\nQuestion: Is this sentence positive or negative?\nAnswer: negative",
    "{s}\nQuestion: Does this sentence make sense?\nAnswer: yes",
    "{s}\nQuestion: Does this sentence make sense?\nAnswer: no",
    "Sentence 1: {s}\nSentence 2: {s}\nQuestion: Do both sentences mean the same thing?\nAnswer: yes",
    "{s}\nQuestion: {s} True or False?\nAnswer: True",
    "{s}\nQuestion: {s} True or False?\nAnswer: False",
    "Question 1: {s}\nQuestion 2: {s}\nQuestion: Do both questions ask the same thing?\nAnswer: no",
    "{s}\nQuestion: {s} True, False or Neither?\nAnswer: Neither",
    "{s}\n{s}\nQuestion: Does this response answer the question?\nAnswer: yes",
    "Question: How similar are the two sentences, on a scale from 0 to 5?\nAnswer: 3",
]


@pytest.fixture(scope="session")
def tok():
    # The answer words come out as single tokens (" positive", " no", ...), as in real tokenizers.
    return train_tokenizer([p.format(s=s) for p in PROMPTS for s in SENTENCES] * 5, vocab_size=512)


@pytest.fixture(scope="session")
def model(tok):
    # A wide initialisation makes an untrained model's choices differ by more than float noise,
    # so predictions vary across examples and agreement checks are not decided by near-ties.
    cfg = build_config(
        "micro", len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        overrides={"initializer_range": 0.5},
    )  # fmt: skip
    return build_model(cfg, seed=0).eval()


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The real GLUE dev sets (``../shared/data/glue``); tests that need them skip without them."""
    path = default_data_dir() / "glue"
    if not path.is_dir():
        pytest.skip(f"GLUE data not found at {path} (set R1RL_DATA_DIR to the shared data folder)")
    return path
