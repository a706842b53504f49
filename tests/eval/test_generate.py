"""generate_until: stops cut where lm-eval cuts, only generated text stops a row, seeds fix samples."""

import random

import torch
from r1rl.eval.generate import StopOnStrings, effective_max_gen_toks, generate_until, truncate_at_stop

PROMPTS = [
    "the film is a charming and often affecting journey .\nQuestion: Is this sentence positive?\nAnswer:",
    "The cat sat on the mat.\nQuestion: Does this sentence make sense?\nAnswer:",
    "She reads books that he wrote.",
]


def lm_eval_cut(text: str, until: list[str]) -> str:
    """lm-eval's postprocess_generated_text, written out: split on each term in turn."""
    for term in until:
        if term:
            text = text.split(term)[0]
    return text


def test_truncate_at_stop_by_hand():
    assert truncate_at_stop(" 18\n\nQuestion: 2", ["Question:", "</s>"]) == (" 18\n\n", True)
    # the earliest of several stop sequences wins, whatever their order in the list
    assert truncate_at_stop("a\ndef b\nclass c", ["\nclass", "\ndef"]) == ("a", True)
    assert truncate_at_stop("abc", ["", "x"]) == ("abc", False)  # an empty stop is ignored, as lm-eval
    assert truncate_at_stop("Question: at once", ["Question:"]) == ("", True)
    # overlapping stops: lm-eval splits on each in list order, which here is not the earliest cut
    assert truncate_at_stop("b\n#a", ["#a", "\n#a"]) == ("b\n", True)


def test_truncate_at_stop_equals_lm_eval_split():
    rng = random.Random(0)
    for _ in range(500):
        text = "".join(rng.choice("ab\n#") for _ in range(rng.randint(0, 12)))
        until = ["".join(rng.choice("ab\n#") for _ in range(rng.randint(0, 3))) for _ in range(3)]
        assert truncate_at_stop(text, until)[0] == lm_eval_cut(text, until)


def test_stop_criterion_reads_generated_tokens_only(tok):
    prompt = tok.encode("Question: x\nAnswer:")
    gen_a = tok.encode(" yes\n\nQuestion:")  # row 0 writes the stop sequence
    gen_b = tok.encode(" no no no no no")  # row 1 does not; its prompt holds "Question:" too
    width = max(len(gen_a), len(gen_b))
    rows = [
        prompt + gen_a + [tok.pad_token_id] * (width - len(gen_a)),
        prompt + gen_b + [tok.pad_token_id] * (width - len(gen_b)),
    ]
    stop = StopOnStrings(tok, ["Question:"], len(prompt), 2)
    done = stop(torch.tensor(rows), None)
    assert done.tolist() == [True, False]
    # At the first generated token nothing is done, though the prompt contains the stop sequence.
    fresh = StopOnStrings(tok, ["Question:"], len(prompt), 2)
    assert fresh(torch.tensor([r[: len(prompt) + 1] for r in rows]), None).tolist() == [False, False]


def test_effective_max_gen_toks():
    assert effective_max_gen_toks(256, 2048) == 256
    assert effective_max_gen_toks(1024, 512) == 256  # lm-eval would fail its assertion here
    assert effective_max_gen_toks(511, 512) == 511


def test_stop_sequence_ends_generation_where_the_text_is_cut(model, tok):
    free = generate_until(model, tok, PROMPTS, until=[], max_gen_toks=24, batch_size=1)
    assert all(c.finish in ("length", "eos") for c in free)
    for prompt, c in zip(PROMPTS, free):
        text = c.text
        if len(text) < 6:
            continue
        stop = text[3:6]  # a string this greedy continuation is known to write
        (cut,) = generate_until(model, tok, [prompt], until=[stop], max_gen_toks=24)
        assert cut.text == text[: text.index(stop)] == lm_eval_cut(text, [stop])
        assert cut.finish == "stop" and cut.n_tokens < c.n_tokens


def test_results_in_input_order_whatever_the_batching(model, tok):
    a = generate_until(model, tok, PROMPTS, max_gen_toks=8, batch_size=1)
    b = generate_until(model, tok, PROMPTS, max_gen_toks=8, batch_size=3)
    assert [c.text for c in a] == [c.text for c in b]


def test_sampling_is_deterministic_in_the_seed(model, tok):
    kw = dict(max_gen_toks=12, do_sample=True, temperature=1.0, batch_size=4)
    prompts = PROMPTS * 2
    torch.manual_seed(123)
    before = torch.rand(1)
    a = generate_until(model, tok, prompts, seed=7, **kw)
    b = generate_until(model, tok, prompts, seed=7, **kw)
    c = generate_until(model, tok, prompts, seed=8, **kw)
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.text for x in a] != [x.text for x in c]
    torch.manual_seed(123)
    assert torch.rand(1) == before  # the caller's RNG is left alone (fork_rng)
    greedy = [generate_until(model, tok, PROMPTS, max_gen_toks=8, seed=s) for s in (1, 2)]
    assert [x.text for x in greedy[0]] == [x.text for x in greedy[1]]


def test_long_prompt_keeps_its_end(model, tok):
    long = "the cat sat on the mat . " * 200 + "\nAnswer:"
    (c,) = generate_until(model, tok, [long], max_gen_toks=4, max_length=64)
    assert c.prompt_truncated and c.n_tokens <= 4
    (short,) = generate_until(model, tok, ["Answer:"], max_gen_toks=4, max_length=64)
    assert not short.prompt_truncated


def test_generate_nothing(model, tok):
    assert generate_until(model, tok, [], max_gen_toks=4) == []
