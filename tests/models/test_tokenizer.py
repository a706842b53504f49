from transformers import AutoTokenizer

from r1rl.models.tokenizer import EOS, train_tokenizer

TEXTS = ["12+34=46 46-5=41", "7*8=56", "<think>1+2=3</think><answer>3</answer>"] * 50


def test_digits_are_single_tokens_and_tags_survive_decoding(tmp_path):
    tok = train_tokenizer(TEXTS, vocab_size=300)
    text = "<think>123+45=168</think><answer>168</answer>"
    ids = tok(text).input_ids
    pieces = [tok.decode([i]) for i in ids]
    assert "123" not in pieces and "1" in pieces
    assert {"<think>", "</think>", "<answer>", "</answer>"} <= set(pieces)
    assert tok.decode(ids, skip_special_tokens=True) == text
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text).input_ids == ids
    assert loaded.eos_token == EOS and loaded.pad_token_id != loaded.eos_token_id
    chat = loaded.apply_chat_template(
        [{"role": "user", "content": "1+2="}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>assistant\n")
