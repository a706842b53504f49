"""Training loops: one loop skeleton, the supervised loop, PPO, distill sampling."""
