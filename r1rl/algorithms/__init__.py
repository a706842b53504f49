"""Pure RL math over (B, T) tensors and masks: advantages, losses, KL, router and distillation losses."""
