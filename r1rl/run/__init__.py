"""Running stages: the CLI, the stage table, the pipeline, re-run decisions."""
