"""Hyper-parameter search: a sweep's config and search space, the Optuna study that runs its trials
(each an ordinary run directory), pruning from the periodic held-out eval, and the results report."""
