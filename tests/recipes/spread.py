"""A reward whose scores differ between samples of one prompt, so that every PPO step has advantages."""


def digit_share(prompts, completions, **columns):
    return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]
