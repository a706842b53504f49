"""Multi-turn episodes: the model writes a turn, its tools or environment answer, the model goes on.

Every episode of a batch advances together, one turn at a time: the rollout engine (or ``generate``)
completes each unfinished episode's context until its turn ends (the end-of-turn token, a stop
sequence, or ``rollout.max_new_tokens``: a cut turn is answered too); the turn is read
(:func:`r1rl.envs.base.parse_turn`); each
tool call runs in the :class:`~r1rl.envs.tools.ToolRunner`'s worker process, and the results go
back to the model as tool messages rendered by the tokenizer's chat template. A turn that calls no
tool ends the episode, unless the environment's ``step`` answers it and says it is not done. An
episode also ends at ``env.max_turns`` turns (the last turn's calls are not run) or once it has
added ``env.max_tokens`` tokens after its prompt (``truncated``).

Token ids are built by concatenation, never by re-tokenising the conversation: the model's tokens
stay exactly what it sampled, and what the environment says is the text the chat template adds for
the new messages, tokenised on its own (TRL's and veRL's scheme). That text is measured on a stand-in
conversation, so the template must render a conversation's prefix as a prefix of the whole (ChatML,
Qwen3's and r1rl's own do). The result is one :class:`~r1rl.models.generation.Generation` whose
completion holds the whole episode after the prompt, with ``action_mask`` 1 on the model's tokens
and 0 on the environment's: PPO's log-probs, KL, values, advantages and loss cover the model's
tokens only; the environment's are context.

Notation: ``B`` episodes, ``T`` tokens an episode adds after its prompt (both sides').
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

import torch

from r1rl.envs.base import ENVIRONMENTS, TOOLS, Environment, Step, Turn, environment_tools, parse_turn
from r1rl.envs.tools import Tool, ToolOutcome, ToolRunner, tool_schema
from r1rl.errors import UserError, did_you_mean
from r1rl.models.encoding import encode_prompt
from r1rl.models.generation import Generation, left_pad
from r1rl.records import is_conversation
from r1rl.registry import load_plugin

# (contexts: one list of token ids per unfinished episode, max new tokens) -> their next turns
GenerateFn = Callable[[list[list[int]], int], Generation]
_MARK = "\u2063"  # an invisible separator standing in for a message's content when measuring the template


def _resolve(spec: str, registry: Any, kind: str) -> Any:
    """A registered name, ``module:attr``, ``file.py:attr``, or a name an installed package exposes in
    the ``r1rl.tools`` / ``r1rl.environments`` entry-point group (as rewards resolve)."""
    if spec in registry:
        return registry[spec]
    if ":" in spec:
        return load_plugin(spec, kind)
    group = "r1rl.tools" if kind == "tool" else "r1rl.environments"
    for ep in entry_points(group=group):
        if ep.name == spec:
            try:
                return ep.load()
            except Exception as e:  # a broken installed plug-in is bad input too
                raise UserError(f"{kind} {spec!r}: entry point {ep.value!r} failed to load ({e})") from None
    key = f"env.{'tools' if kind == 'tool' else 'environment'}"
    names = [*registry.names(), *(ep.name for ep in entry_points(group=group))]
    raise UserError(f"{key}: unknown {kind} {spec!r}{did_you_mean(spec, names)}")


class EnvOptions(Protocol):
    """The recipe's ``env`` section (:class:`r1rl.config.EnvConfig`), as far as episodes read it."""

    tools: list[str]
    environment: str | None
    max_turns: int
    max_tokens: int
    tool_timeout_s: float
    tool_max_chars: int


@dataclass
class EnvSpec:
    """What a multi-turn run's episodes use, resolved from the recipe's ``env`` (:class:`EnvConfig`)."""

    tools: list[Tool] = field(default_factory=list)
    factory: Callable[[], object] | None = None  # one environment per episode (a class, or any callable)
    max_turns: int = 4
    max_tokens: int = 160
    timeout: float = 5.0
    max_chars: int = 500
    _schemas: list[dict[str, Any]] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_config(cls, cfg: EnvOptions) -> EnvSpec:
        tools = [_resolve(s, TOOLS, "tool") for s in cfg.tools]
        for spec, tool in zip(cfg.tools, tools):
            if not callable(tool):
                raise UserError(f"env.tools: {spec!r} is a {type(tool).__name__}, not a function")
        factory = _resolve(cfg.environment, ENVIRONMENTS, "environment") if cfg.environment else None
        if factory is not None and not callable(factory):
            raise UserError(f"env.environment: {cfg.environment!r} is not a class or factory")
        return cls(tools, factory, cfg.max_turns, cfg.max_tokens, cfg.tool_timeout_s, cfg.tool_max_chars)

    def schemas(self) -> list[dict[str, Any]]:
        """The tools' schemas as the chat template lists them: the functions', then the environment's
        (made once: they do not change between rollouts)."""
        if self._schemas is None:
            tools = list(self.tools)
            if self.factory is not None:
                tools += environment_tools(self.factory())
            self._schemas = [tool_schema(t) for t in tools]
        return self._schemas

    def runner(self) -> ToolRunner:
        return ToolRunner(self.tools, self.timeout, self.max_chars)


@dataclass
class Episodes:
    """A batch of finished episodes."""

    generation: Generation  # completion = the whole episode after the prompt; action_mask marks the model's
    conversations: list[list[dict[str, Any]]]  # (B,) the messages each episode added after its prompt
    env_rewards: list[float | None]  # (B,) the environment's rewards (steps' and get_reward()), None if none
    metrics: dict[str, float]
    environments: list[object | None]  # (B,) each episode's environment as it ended (None without one)


@dataclass
class _Episode:
    prompt: list[dict[str, Any]]
    env: object | None
    context: list[int]  # prompt ids, then everything since
    n_prompt: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    done: bool = False
    truncated: bool = False
    turns: int = 0
    calls: int = 0  # tool calls written, malformed ones included
    cut: bool = False  # the last turn ran to max_new_tokens
    cut_turns: int = 0
    turn: Turn = field(default_factory=lambda: Turn(""))  # the last turn the model wrote, read

    def add(self, ids: Sequence[int], action: int, logprobs: Sequence[float] | None = None) -> None:
        self.context += ids
        self.tokens += ids
        self.actions += [action] * len(ids)
        self.logprobs += list(logprobs) if logprobs is not None else [0.0] * len(ids)


def as_messages(prompt: Any) -> list[dict[str, Any]]:
    """A prompt as a conversation: a text prompt becomes one user message."""
    return (
        [dict(m) for m in prompt] if is_conversation(prompt) else [{"role": "user", "content": str(prompt)}]
    )


def start(
    spec: EnvSpec, tokenizer: Any, prompts: Sequence[Any], rows: Sequence[Mapping[str, Any]],
    system_prompt: str | None = None, schemas: list[dict[str, Any]] | None = None,
) -> list[_Episode]:  # fmt: skip
    """One episode per prompt: its environment reset on its row, its prompt rendered with the tools."""
    out = []
    for prompt, row in zip(prompts, rows):
        env = spec.factory() if spec.factory is not None else None
        messages = as_messages(prompt)
        extra = env.reset(**dict(row)) if env is not None and hasattr(env, "reset") else None
        if extra:  # TRL: reset's text joins the last user message
            last = max(i for i, m in enumerate(messages) if m["role"] in ("user", "system"))
            messages[last] = {**messages[last], "content": f"{messages[last]['content']}{extra}"}
        ids = encode_prompt(tokenizer, messages, system_prompt, tools=schemas or None)
        out.append(_Episode(messages, env, list(ids), len(ids)))
    return out


def run_episodes(
    generate: GenerateFn, tokenizer: Any, spec: EnvSpec, prompts: Sequence[Any],
    rows: Sequence[Mapping[str, Any]], max_new_tokens: int, system_prompt: str | None = None,
    synced: bool = False,
) -> Episodes:  # fmt: skip
    """Run one episode per prompt (``rows``: their dataset rows, for the environment's ``reset``).

    ``generate(contexts, max_new_tokens)`` completes the unfinished episodes' next turns; with
    ``synced`` (a sharded model: every rank must step alike) it is called for every turn, on a
    stand-in context when this rank's episodes are all done.
    """
    schemas = spec.schemas() or None
    episodes = start(spec, tokenizer, prompts, rows, system_prompt, schemas)
    counts: Counter[str] = Counter()
    with spec.runner() as runner:
        for turn in range(spec.max_turns):
            active = [e for e in episodes if not e.done]
            if not active and not synced:
                break
            contexts = [e.context for e in active] or [episodes[0].context]
            budget = max((spec.max_tokens - len(e.tokens) for e in active), default=1)
            g = generate(contexts, max(1, min(max_new_tokens, budget)))
            for j, ep in enumerate(active):
                _model_turn(ep, g, j, spec)
                if not ep.done:
                    _answer(ep, runner, tokenizer, schemas, spec, turn, counts)
    envs = [e.env for e in episodes]
    counters: Counter[str] = Counter()  # an environment's own counters (its ``metrics``), summed
    for env in envs:
        counters.update(getattr(env, "metrics", None) or {})
    for e in episodes:
        if e.env is not None and callable(getattr(e.env, "get_reward", None)):
            value = e.env.get_reward()  # type: ignore[attr-defined]
            if value is not None:
                e.rewards.append(float(value))
    return Episodes(
        _generation(episodes, tokenizer), [e.messages for e in episodes],
        [sum(e.rewards) if e.rewards else None for e in episodes],
        {**_metrics(episodes, counts), **{f"env/{k}": v / len(envs) for k, v in counters.items()}}, envs,
    )  # fmt: skip


def _model_turn(ep: _Episode, g: Generation, j: int, spec: EnvSpec) -> None:
    """Append the model's turn ``j`` of ``g`` to ``ep``; end it when out of tokens."""
    n = int(g.completion_mask[j].sum())
    ids = g.completion_ids[j, :n].tolist()
    lps = g.logprobs[j, :n].tolist() if g.logprobs is not None else None
    room = spec.max_tokens - len(ep.tokens)
    if n > room:
        ids, lps = ids[:room], lps[:room] if lps is not None else None
    ep.add(ids, 1, lps)
    ep.turns += 1
    ep.turn = parse_turn(g.texts[j])
    ep.messages.append(ep.turn.message)
    ep.cut = bool(g.truncated[j])  # the turn ran to max_new_tokens: the environment still answers it
    ep.cut_turns += ep.cut
    if n >= room:
        ep.done = ep.truncated = True


def _answer(
    ep: _Episode, runner: ToolRunner, tokenizer: Any, schemas: list[dict[str, Any]] | None,
    spec: EnvSpec, turn: int, counts: Counter[str],
) -> None:  # fmt: skip
    """Run the turn's tool calls (or the environment's ``step``) and append what comes back."""
    parsed = ep.turn
    last_turn = turn == spec.max_turns - 1
    if parsed.calls or parsed.malformed:
        ep.calls += len(parsed.calls) + len(parsed.malformed)
        counts["calls"] += len(parsed.calls) + len(parsed.malformed)
        counts["malformed"] += len(parsed.malformed)
        if last_turn:
            counts["unanswered"] += 1
            ep.done = True
            return
        replies = [_call(runner, c.name, c.arguments, ep) for c in parsed.calls]
        for raw in parsed.malformed:
            runner.counts["malformed"] += 1
            replies.append(
                ToolOutcome("", "malformed", f"error: malformed tool call: {raw[:200]}", 0.0).message
            )
        step = Step(replies, done=False)
    elif ep.env is not None and getattr(type(ep.env), "step", Environment.step) is not Environment.step:
        step = cast(Environment, ep.env).step(ep.messages[-1])
        if step.reward is not None:
            ep.rewards.append(float(step.reward))
    else:
        step = Step()
        ep.truncated = ep.cut  # a cut turn with no one to answer it: the episode ends unfinished
    if step.done or not step.messages or last_turn:
        ep.done = True
        return
    ended = tokenizer.decode(ep.tokens[-1:], skip_special_tokens=False) if ep.tokens else ""
    ids = environment_ids(tokenizer, step.messages, schemas, ended)
    if len(ep.tokens) + len(ids) >= spec.max_tokens:
        ep.done = ep.truncated = True
        return
    ep.messages += step.messages
    ep.add(ids, 0)


def _call(runner: ToolRunner, name: str, arguments: dict[str, Any], ep: _Episode) -> dict[str, Any]:
    outcome = runner.call(name, arguments, owner=ep.env)
    if ep.env is not None and outcome.owner is not None:
        ep.env = outcome.owner  # the worker's copy, with the state the call left
    return outcome.message


def environment_ids(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, ended: str = ""
) -> list[int]:
    """The tokens the chat template adds after an assistant turn for ``messages`` (tool results, a user
    reply) up to and including the next assistant turn's opening. ``ended``: the text of the token the
    model's turn ended with (its end-of-turn token is then not added again)."""
    base = [{"role": "user", "content": _MARK}, {"role": "assistant", "content": _MARK}]
    render = tokenizer.apply_chat_template
    before = render(base, tools=tools, tokenize=False)
    after = render(base + messages, tools=tools, tokenize=False, add_generation_prompt=True)
    if not after.startswith(before):
        raise UserError(
            "multi-turn episodes need a chat template that renders a conversation's prefix as a prefix of "
            "the whole; this tokenizer's does not"
        )
    tail = before[before.rindex(_MARK) + len(_MARK) :]  # what closes an assistant turn: "<|im_end|>\n"
    if ended and tail.startswith(ended):
        tail = tail[len(ended) :]
    return list(tokenizer(tail + after[len(before) :], add_special_tokens=False).input_ids)


def _generation(episodes: list[_Episode], tokenizer: Any) -> Generation:
    """The episodes as one generation: prompts left-padded, everything after them right-padded."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompt_ids, prompt_mask = left_pad([e.context[: e.n_prompt] for e in episodes], pad)
    T = max((len(e.tokens) for e in episodes), default=0)

    def right(rows: list[list[Any]], value: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([r + [value] * (T - len(r)) for r in rows], dtype=dtype).reshape(len(rows), T)

    return Generation(
        prompt_ids, prompt_mask,
        right([e.tokens for e in episodes], pad, torch.long),
        right([[1] * len(e.tokens) for e in episodes], 0, torch.long),
        [str(e.messages[-1].get("content", "")) if e.messages else "" for e in episodes],
        torch.tensor([e.truncated for e in episodes], dtype=torch.bool),
        right([e.logprobs for e in episodes], 0.0, torch.float32),
        right([e.actions for e in episodes], 0, torch.long),
    )  # fmt: skip


def _metrics(episodes: list[_Episode], counts: Counter[str]) -> dict[str, float]:
    """``env/*``: turns, tool calls and their outcomes, per episode or as shares."""
    n = max(len(episodes), 1)
    tool_msgs = [m for e in episodes for m in e.messages if m["role"] == "tool"]
    written = counts["calls"]
    bad = counts["malformed"] + sum(
        1 for m in tool_msgs if m.get("status") in ("bad_arguments", "unknown_tool")
    )
    out = {
        "env/turns": sum(e.turns for e in episodes) / n,
        "env/tool_calls": sum(e.calls for e in episodes) / n,
        "env/tool_call_rate": sum(e.calls > 0 for e in episodes) / n,
        "env/well_formed": (written - bad) / written if written else 1.0,
        "env/truncated": sum(e.truncated for e in episodes) / n,
        "env/cut_turns": sum(e.cut_turns for e in episodes) / n,
        "env/env_tokens": sum(len(e.actions) - sum(e.actions) for e in episodes) / n,
    }
    for status, k in Counter(str(m.get("status")) for m in tool_msgs).items():
        out[f"env/tool/{status}"] = k / n  # calls per episode that ended so
    if counts["unanswered"]:
        out["env/out_of_turns"] = counts["unanswered"] / n
    return out
