"""Pair splitting against hand-computed token ids; scoring against a plain forward pass; invariances."""

import pytest
import torch
from r1rl.eval.loglik import encode_pair, loglikelihood, resolve_max_length, score_tokens
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

# A word-level tokenizer over byte-level pieces ("Ġ" marks a leading space), so ids are known by hand.
VOCAB = ["<unk>", "<eos>", "Answer", ":", "Ġpositive", "Ġpos", "itive", "Ġ", "positive", "Question", "ĠIs",
         "Ġit", "?", "Ġyes"]  # fmt: skip
ID = {w: i for i, w in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def word_tok():
    t = Tokenizer(models.WordLevel(vocab=ID, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<eos>", unk_token="<unk>")


def test_split_moves_trailing_space_to_continuation(word_tok):
    # "Answer: positive" -> Answer | : | Ġpositive. The space belongs to the answer's token.
    assert encode_pair(word_tok, "Answer:", " positive") == ([ID["Answer"], ID[":"]], [ID["Ġpositive"]])
    assert encode_pair(word_tok, "Answer: ", "positive") == ([ID["Answer"], ID[":"]], [ID["Ġpositive"]])
    # Encoding the two strings separately would have given a lone "Ġ" and a space-less "positive".
    assert word_tok.encode("Answer: ") == [ID["Answer"], ID[":"], ID["Ġ"]]
    assert word_tok.encode("positive") == [ID["positive"]]


def test_split_is_at_len_context_enc(word_tok):
    # Context "…Ġpos" + continuation "itive?": the whole is …Ġpositive ?, the context alone ends in Ġpos.
    # lm-eval keeps whole[len(context_enc):], i.e. just "?" — not a re-tokenised "itive?".
    ctx, cont = encode_pair(word_tok, "Question: Is it pos", "itive?")
    assert ctx == [ID["Question"], ID[":"], ID["ĠIs"], ID["Ġit"], ID["Ġpos"]]
    assert cont == [ID["?"]]


def test_empty_context_uses_prefix_token(word_tok):
    # No BOS: the EOS token stands for the empty context.
    assert encode_pair(word_tok, "", " yes") == ([ID["<eos>"]], [ID["Ġyes"]])


def _manual_loglik(model, ctx, cont):
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)  # (T, V)
    pos = range(len(ctx) - 1, len(ctx) + len(cont) - 1)
    ll = sum(logp[p, t].item() for p, t in zip(pos, cont))
    greedy = all(logp[p].argmax().item() == t for p, t in zip(pos, cont))
    return ll, greedy


def test_score_equals_plain_forward(model, tok):
    pairs = [("The cat sat on the mat.\nAnswer:", " yes"), ("unflinchingly bleak", " and desperate")]
    got = loglikelihood(model, tok, pairs, batch_size=4)
    for (c, x), (ll, greedy) in zip(pairs, got):
        want_ll, want_greedy = _manual_loglik(model, *encode_pair(tok, c, x))
        assert ll == pytest.approx(want_ll, abs=1e-5) and greedy == want_greedy


def _pairs():
    ctxs = [
        "a",
        "the film is a charming and often affecting journey .\nQuestion: Is it positive?\nAnswer:",
        "She reads books.\nAnswer:",
        "Sentence 1: The cat sat on the mat.\nSentence 2: It rained.\nAnswer:",
    ]
    conts = [" positive", " no", " True or False", " 3"]  # one- and multi-token continuations
    return [(c, x) for c in ctxs for x in conts]  # fmt: skip


def test_batched_equals_one_at_a_time(model, tok):
    pairs = _pairs()
    one = [loglikelihood(model, tok, [p], batch_size=1)[0] for p in pairs]
    for bs in (3, 16):
        batched = loglikelihood(model, tok, pairs, batch_size=bs)
        for (a, ga), (b, gb) in zip(one, batched):
            assert a == pytest.approx(b, abs=1e-5) and ga == gb


def test_order_invariant_and_deterministic(model, tok):
    pairs = _pairs()
    a = loglikelihood(model, tok, pairs, batch_size=5)
    assert a == loglikelihood(model, tok, pairs, batch_size=5)
    rev = loglikelihood(model, tok, pairs[::-1], batch_size=5)[::-1]
    for (x, _), (y, _) in zip(a, rev):
        assert x == pytest.approx(y, abs=1e-5)


def test_left_truncation(model, tok):
    ctx, cont = encode_pair(tok, "She reads books that he wrote. " * 6 + "Answer:", " yes")
    L = 16
    assert len(ctx) + len(cont) > L + 1
    (ll, greedy), = score_tokens(model, [(ctx, cont)], max_length=L)  # fmt: skip
    # What lm-eval feeds the model: the last L+1 tokens, minus the final one as input.
    kept = (ctx + cont)[-(L + 1) :]
    want_ll, want_greedy = _manual_loglik(model, kept[: -len(cont)], cont)
    assert ll == pytest.approx(want_ll, abs=1e-5) and greedy == want_greedy


def test_greedy_flag(model, tok):
    ctx, _ = encode_pair(tok, "The cat sat on the mat.", " x")
    with torch.no_grad():
        nxt = model(torch.tensor([ctx])).logits[0, -1].argmax().item()
    other = (nxt + 1) % len(tok)
    (_, g1), (_, g2) = score_tokens(model, [(ctx, [nxt]), (ctx, [other])])
    assert g1 and not g2


def test_bad_requests(model):
    with pytest.raises(ValueError, match="empty context"):
        score_tokens(model, [([], [2])])
    with pytest.raises(ValueError, match="empty continuation"):
        score_tokens(model, [([1, 2], [])])
    with pytest.raises(ValueError, match="exceeds the model's max length 4"):
        score_tokens(model, [([1], [2] * 5)], max_length=4)


def test_max_length_from_config(model, tok):
    assert resolve_max_length(model, tok) == model.config.max_position_embeddings == 512
