"""CausalLMScorer: batched, padded perplexity equals the model's own loss on each text alone."""

import math

import torch

from r1rl.data.scoring import CausalLMScorer
from r1rl.models.factory import build_config, build_model


def test_causal_lm_perplexity_matches_unbatched_loss(tokenizer):
    mc = build_config(
        "micro", len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    model = build_model(mc, 0)
    texts = ["12+3=15", "60-1=59 59+2=61 61-40=21", "7"]
    ppl = CausalLMScorer(model, tokenizer, batch_size=2)(texts)  # two batches, the first padded
    assert ppl.shape == (3,)
    with torch.no_grad():
        for text, p in zip(texts[:2], ppl[:2]):
            ids = torch.tensor([tokenizer(text, add_special_tokens=False).input_ids])
            logits = model(input_ids=ids).logits[0, :-1]  # out.loss would add the router's aux loss
            nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:])
            assert math.isclose(p, math.exp(nll.item()), rel_tol=1e-4)
    assert math.isnan(ppl[2])  # one token: nothing to predict
