"""Models: transformers' MoE built or loaded, LoRA, the tokenizer, generation, routing replay, memory."""
