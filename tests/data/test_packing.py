"""Packing (lengths, EOS placement, no token lost), per-document loss, attention isolation, tokenising."""

import time

import numpy as np
import pytest
import torch

from r1rl.data.packing import (
    IGNORE_INDEX,
    pack_documents,
    pack_stream,
    per_document_loss,
    rows_needed,
    tokenize_corpus,
)
from r1rl.errors import UserError
from r1rl.models.factory import build_config, build_model

EOS, PAD = 0, 99
DOCS = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 11]]  # + EOS each: lengths 4, 2, 6, 3 = 15 tokens


def real_tokens(batch):
    return batch.input_ids[batch.segment_ids >= 0].tolist()


def with_eos(docs):
    return [t for d in docs for t in [*d, EOS]]


def test_stream_packing_loses_nothing_and_places_eos():
    b = pack_stream(DOCS, seq_len=4, eos_id=EOS, pad_id=PAD, drop_last=False)
    assert b.input_ids.shape == (4, 4)  # ceil(15 / 4)
    assert real_tokens(b) == with_eos(DOCS)
    assert b.input_ids[-1].tolist() == [10, 11, EOS, PAD] and b.labels[-1, -1] == IGNORE_INDEX
    # an EOS closes each document, at the last position of its segment
    seg = b.segment_ids.flatten()
    ends = [int(torch.nonzero(seg == d).max()) for d in range(len(DOCS))]
    assert (b.input_ids.flatten()[ends] == EOS).all()
    # positions restart at each document start and at each row start
    assert b.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 0, 1], [0, 1, 2, 3], [0, 1, 2, 0]]
    dropped = pack_stream(DOCS, seq_len=4, eos_id=EOS)
    assert dropped.input_ids.shape == (3, 4) and real_tokens(dropped) == with_eos(DOCS)[:12]
    with pytest.raises(UserError, match="fewer than one row"):
        pack_stream([[1]], seq_len=8, eos_id=EOS)


def test_document_packing_keeps_documents_whole():
    b = pack_documents(DOCS, seq_len=6, eos_id=EOS, pad_id=PAD)
    assert b.input_ids.tolist() == [
        [1, 2, 3, EOS, 4, EOS],
        [5, 6, 7, 8, 9, EOS],
        [10, 11, EOS, PAD, PAD, PAD],
    ]
    assert real_tokens(b) == with_eos(DOCS)
    assert b.segment_ids[2].tolist() == [3, 3, 3, -1, -1, -1]
    assert b.num_tokens == 15 == int((b.labels != IGNORE_INDEX).sum())
    # a document longer than a row continues on the next; nothing is cut
    long = pack_documents([[1] * 9, [2]], seq_len=4, eos_id=EOS, pad_id=PAD)
    assert real_tokens(long) == [1] * 9 + [EOS, 2, EOS] and long.input_ids.shape == (3, 4)
    assert rows_needed([10, 2], 4) == 3
    padded = pack_documents(DOCS, seq_len=6, eos_id=EOS, pad_id=PAD, num_rows=5)
    assert padded.input_ids.shape == (5, 6) and (padded.segment_ids[3:] == -1).all()
    with pytest.raises(ValueError, match="need 3 rows"):
        pack_documents(DOCS, seq_len=6, eos_id=EOS, pad_id=PAD, num_rows=2)


def test_random_documents_round_trip():
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 50, size=rng.integers(0, 30)).tolist() for _ in range(200)]
    for seq_len in (7, 16, 64):
        for b in (
            pack_stream(docs, seq_len, EOS, PAD, drop_last=False),
            pack_documents(docs, seq_len, EOS, PAD),
        ):
            assert b.input_ids.shape[1] == seq_len
            assert real_tokens(b) == with_eos(docs)
            assert (b.position_ids < seq_len).all()


def test_per_document_loss_matches_a_loop():
    torch.manual_seed(0)
    b = pack_documents(DOCS, seq_len=6, eos_id=EOS, pad_id=PAD)
    logits = torch.randn(3, 6, 100)
    got = per_document_loss(logits, b.labels, b.segment_ids, len(DOCS))
    want = []
    for d in range(len(DOCS)):
        losses = []
        for r in range(3):
            for t in range(5):  # position t predicts t + 1
                if b.segment_ids[r, t + 1] == d:
                    losses.append(-torch.log_softmax(logits[r, t], -1)[b.input_ids[r, t + 1]])
        want.append(torch.stack(losses).mean() if losses else torch.tensor(float("nan")))
    assert torch.allclose(got, torch.stack(want), equal_nan=True)
    # an empty document alone at a row start (just its EOS, never a target) has no loss
    b = pack_documents([[1, 2, 3, 4, 5], []], seq_len=6, eos_id=EOS, pad_id=PAD)
    got = per_document_loss(torch.randn(2, 6, 100), b.labels, b.segment_ids, 2)
    assert not torch.isnan(got[0]) and torch.isnan(got[1])


def test_isolated_attention_equals_each_document_alone(tokenizer):
    mc = build_config(
        "micro", len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    model = build_model(mc, 0).eval()
    ids = tokenizer(["12+3=15 15-4=11", "7+8=15", "60-1=59 59+2=61"], add_special_tokens=False).input_ids
    b = pack_documents(ids, 48, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert b.input_ids.shape[0] == 1  # all three share one row
    with torch.no_grad():
        isolated = model(**b.model_inputs(isolate_documents=True)).logits
        crossing = model(**b.model_inputs(isolate_documents=False)).logits
        for d in (1, 2):
            cols = torch.nonzero(b.segment_ids[0] == d).flatten()
            alone = model(input_ids=b.input_ids[:, cols]).logits
            assert torch.allclose(isolated[0, cols], alone[0], atol=1e-5)
            assert not torch.allclose(crossing[0, cols], alone[0], atol=1e-3)  # it sees doc 0


def test_tokenize_corpus_caches_and_matches(tokenizer, tmp_path):
    texts = [f"{i}+{i}={2 * i}" for i in range(2500)]
    want = tokenizer(texts, add_special_tokens=False).input_ids
    ds = tokenize_corpus(texts, tokenizer, cache_dir=tmp_path, num_proc=2)
    assert ds["input_ids"] == want
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files and all(f.startswith("tokens-") for f in files)
    t0 = time.perf_counter()
    again = tokenize_corpus(texts, tokenizer, cache_dir=tmp_path, num_proc=2)
    assert again["input_ids"] == want and time.perf_counter() - t0 < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # loaded, not rewritten
    other = tokenize_corpus(texts[:10], tokenizer, cache_dir=tmp_path)
    assert other["input_ids"] == want[:10] and len(list(tmp_path.iterdir())) > len(files)
