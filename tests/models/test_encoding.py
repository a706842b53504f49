"""Records to token ids: text and chat prompts, SFT label masks (multi-turn), EOS ids, stop sequences."""

import pytest
import torch

from r1rl.errors import UserError
from r1rl.models.encoding import IGNORE, encode_prompt, encode_sft, eos_token_ids
from r1rl.models.factory import build_config, build_model
from r1rl.models.generation import completion_mask_from, generate
from r1rl.models.tokenizer import END_OF_TURN, train_tokenizer

CONV = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "1+2="},
    {"role": "assistant", "content": "3"},
    {"role": "user", "content": "and 4+5="},
    {"role": "assistant", "content": "<answer>9</answer>"},
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["1+2=3 and 4+5=9 be brief hello"] * 50, vocab_size=300)


def _trained_text(tok, ids, labels):
    return tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE])


def test_text_sft_trains_on_completion_and_eos_only(tok):
    ids, labels = encode_sft(tok, {"prompt": "1+2=", "completion": "3"})
    n_prompt = len(tok("1+2=").input_ids)
    assert labels[:n_prompt] == [IGNORE] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id


def test_multi_turn_chat_trains_on_every_assistant_turn_only(tok):
    ids, labels = encode_sft(tok, {"prompt": CONV})
    trained = [i for i, lab in zip(ids, labels) if lab != IGNORE]
    end = tok.convert_tokens_to_ids(END_OF_TURN)
    # both replies and the <|im_end|> closing each: nothing of the system or user turns, no headers
    assert tok.decode(trained, skip_special_tokens=False) == f"3{END_OF_TURN}<answer>9</answer>{END_OF_TURN}"
    assert trained.count(end) == 2
    assert all(lab == IGNORE or lab == i for i, lab in zip(ids, labels))


def test_templates_without_generation_markers_give_the_same_replies(tok):
    plain = train_tokenizer(["1+2=3 and 4+5=9 be brief hello"] * 50, vocab_size=300)
    plain.chat_template = plain.chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", ""
    )
    ids, labels = encode_sft(tok, {"prompt": CONV})
    ids2, labels2 = encode_sft(plain, {"prompt": CONV})
    assert ids == ids2
    # by prefixes, each reply also takes the newline the template writes after <|im_end|>
    assert _trained_text(plain, ids2, labels2).replace("\n", "") == _trained_text(tok, ids, labels)


def test_chat_prompt_with_text_completion(tok):
    ids, labels = encode_sft(tok, {"prompt": CONV[:2], "completion": "3"}, system_prompt="ignored: has one")
    assert tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE], skip_special_tokens=False) == (
        f"3{END_OF_TURN}"
    )
    with_system = encode_prompt(tok, CONV[1:2], system_prompt="be brief")
    assert with_system == encode_prompt(tok, CONV[:2])  # the system prompt goes first
    assert tok.decode(with_system, skip_special_tokens=False).endswith("<|im_start|>assistant\n")


def test_sft_needs_a_completion_for_text_and_an_assistant_turn_for_chat(tok):
    with pytest.raises(UserError, match="needs a completion"):
        encode_sft(tok, {"prompt": "1+2="})
    with pytest.raises(UserError, match="at least one assistant message"):
        encode_sft(tok, {"prompt": CONV[:2]})


def test_generation_stops_at_every_eos_id_of_the_generation_config(tok):
    cfg = build_config("micro", len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = build_model(cfg, seed=0)
    end = tok.convert_tokens_to_ids(END_OF_TURN)
    model.generation_config.eos_token_id = [tok.eos_token_id, end]
    assert eos_token_ids(model, tok) == [tok.eos_token_id, end]

    def favour_end(module, inputs, logits):  # <|im_end|> the likeliest token everywhere
        logits = logits.clone()
        logits[..., end] += 1e4
        return logits

    model.lm_head.register_forward_hook(favour_end)
    g = generate(model, tok, [encode_prompt(tok, CONV[:2])], max_new_tokens=5, do_sample=False)
    assert g.completion_mask.tolist() == [[1] + [0] * (g.completion_mask.shape[1] - 1)]
    assert not g.truncated.any()


def test_completion_mask_with_several_eos_ids():
    ids = torch.tensor([[5, 7, 2, 9], [5, 3, 7, 7], [5, 5, 5, 5]])
    assert completion_mask_from(ids, [2, 3]).tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
