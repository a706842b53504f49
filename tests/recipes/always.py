"""A reward every completion passes: the tests' tier that accepts whatever a teacher writes."""


def always_one(prompts, completions, **columns):
    return [1.0] * len(completions)
