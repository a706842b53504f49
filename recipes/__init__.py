"""The recipes: one short script per stage that *is* that stage's wiring (installed as ``r1rl.recipes``).

``r1rl pretrain|sft|ppo|eval CONFIG.yaml`` runs ``r1rl.recipes.<stage>.run``; ``r1rl cp ppo
my_ppo.py`` copies one to customise, and ``r1rl ppo CONFIG.yaml --recipe my_ppo.py`` (or
``python my_ppo.py CONFIG.yaml``) runs the copy. ``configs/`` holds the YAML recipes.
"""
