"""A tool and an environment written for TRL's GRPOTrainer(tools=..., environment_factory=...), as its
documentation writes them: r1rl must run them unchanged."""


def multiply(a: int, b: int) -> int:
    """
    Multiplies two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        The product of the two integers.
    """
    return a * b


class CounterEnv:
    def reset(self, **kwargs) -> str | None:
        self.count = int(kwargs.get("start", 0))
        return None

    def increment(self, step: int) -> str:
        """
        Increment the counter.

        Args:
            step: The amount to add to the counter.

        Returns:
            The new counter value.
        """
        self.count += step
        return str(self.count)

    def get_reward(self) -> float:
        return float(self.count)


class AskOnce:
    """An environment for what tools cannot express: it answers the first turn with a question, then ends."""

    def reset(self, **row):
        self.asked = False

    def step(self, message):
        from r1rl.envs.base import Step

        if self.asked:
            return Step()
        self.asked = True
        return Step([{"role": "user", "content": "again?"}], done=False)
