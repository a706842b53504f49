"""r1rl: staged RL post-training (pretrain → SFT → PPO → eval) for Mixture-of-Experts language models."""

__version__ = "0.1.0"
