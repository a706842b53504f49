"""Push a run to the Hugging Face Hub: ``r1rl push RUN_DIR --repo-id ID``.

One commit carries:

- ``final/`` as it is — a full transformers model or a PEFT adapter — or, with ``what="merged"``,
  an adapter merged into its base (``r1rl.models.factory.load_merged``);
- the tokenizer, which every stage saves beside the weights in ``final/``;
- ``README.md``, a model card built with ``huggingface_hub.ModelCard``: its metadata holds the base
  model, licence, tags and the eval results as ``model-index``; its body the lineage (each stage
  with its resolved config), the PPO stage's reward hierarchy and the eval table.

A push reads the run, builds the card, then uploads, one module each:

- :mod:`r1rl.report.hub.run` — what a run directory holds: the stage to push and its lineage, eval
  results, a pipeline's summary, the task;
- :mod:`r1rl.report.hub.card` — the model card's template and the builders of its metadata and tables;
- :mod:`r1rl.report.hub.upload` — the files that go up (merging an adapter if asked), the token, the
  ``huggingface_hub`` calls with retries and backoff, one-line errors, the dry-run folder;
- :mod:`r1rl.report.hub.cli` — the ``r1rl push`` command.

huggingface_hub itself is imported only inside the functions that call it, so the CLI can build
its parser without loading it.
"""

from r1rl.report.hub.card import CARD_TEMPLATE, DATASET_KEYS, build_card
from r1rl.report.hub.cli import add_push_parser, main_push, run_push
from r1rl.report.hub.run import CONFIG_KINDS, TRAIN_STAGES, LineageStage, RunInfo, describe_run
from r1rl.report.hub.upload import ADAPTER_FILES, TRANSIENT_STATUS, WHATS, Upload, prepare_upload, push_run

__all__ = [
    "ADAPTER_FILES",
    "CARD_TEMPLATE",
    "CONFIG_KINDS",
    "DATASET_KEYS",
    "TRAIN_STAGES",
    "TRANSIENT_STATUS",
    "WHATS",
    "RunInfo",
    "LineageStage",
    "Upload",
    "add_push_parser",
    "build_card",
    "describe_run",
    "main_push",
    "prepare_upload",
    "push_run",
    "run_push",
]
