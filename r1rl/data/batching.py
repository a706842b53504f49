"""Fixed-shape training batches of whole documents: curriculum sampling + replay + next-fit packing.

Notation: ``R`` rows, ``T`` = ``seq_len``, ``D`` documents in a batch, ``V`` vocabulary.

Each step, :meth:`DocumentBatcher.get_batch` fills ``R`` rows of ``T`` tokens with documents
(each + EOS, next-fit, see :func:`~r1rl.data.packing.pack_documents`). Documents are drawn
in small chunks: in each chunk ``Binomial(chunk, replay_fraction)`` come from the replay
buffer (if there is one and it is not empty), the rest from the curriculum sampler for the
current step. The first drawn document that no longer fits waits for the next batch, so no
drawn document is lost; a document longer than ``T − 1`` tokens is truncated to fit one row
(counted in ``truncated_tokens``).

After the forward pass, :meth:`DocumentBatcher.feedback` turns the logits into one loss per
document (:func:`~r1rl.data.packing.per_document_loss`), updates the replay priorities and
lets a plateau schedule see the batch loss. The batcher is stateful (pending documents,
generators, buffer, schedule); :meth:`state_dict` / :meth:`load_state_dict` make a resumed
run draw the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from r1rl.data.curriculum import CurriculumSampler
from r1rl.data.packing import PackedBatch, pack_documents, per_document_loss
from r1rl.data.replay import ReplayBuffer


@dataclass
class BatcherStats:
    documents: int = 0  # documents trained on (each time counted)
    replayed: int = 0  # of which replay draws
    tokens: int = 0  # real tokens (EOS included) trained on
    padding: int = 0  # padded positions
    truncated_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DocumentBatcher:
    """Batches of ``rows`` × ``seq_len`` from ``token_lists`` (D_total documents of token ids)."""

    def __init__(
        self,
        token_lists: Sequence[Sequence[int]],
        sampler: CurriculumSampler,
        *,
        rows: int,
        seq_len: int,
        eos_id: int,
        pad_id: int,
        replay: ReplayBuffer | None = None,
        isolate_documents: bool = False,
        draw_chunk: int = 32,
        seed: int = 0,
    ) -> None:
        self.token_lists, self.sampler, self.replay = token_lists, sampler, replay
        self.rows, self.seq_len, self.eos_id, self.pad_id = rows, seq_len, eos_id, pad_id
        self.isolate_documents, self.draw_chunk = isolate_documents, draw_chunk
        self.rng = np.random.default_rng(seed)
        self.pending: deque[tuple[int, bool]] = deque()  # (example id, is a replay draw)
        self.stats = BatcherStats()
        self._last: tuple[int, np.ndarray, PackedBatch] | None = None  # (step, doc ids (D,), batch)

    def _draw(self, step: int) -> None:
        n_rep = self.replay.num_replay(self.draw_chunk) if self.replay is not None else 0
        fresh = self.sampler.sample(self.draw_chunk - n_rep, step)
        replayed = self.replay.sample(n_rep) if self.replay is not None else np.zeros(0, dtype=np.int64)
        drawn = [(int(i), False) for i in fresh] + [(int(i), True) for i in replayed]
        for j in self.rng.permutation(len(drawn)):
            self.pending.append(drawn[j])

    def _tokens(self, i: int) -> Sequence[int]:
        ids = self.token_lists[i]
        return ids[: self.seq_len - 1]  # + EOS = at most one row

    def next_packed(self, step: int) -> tuple[np.ndarray, PackedBatch]:
        """Draw and pack the documents of ``step``. -> (doc ids (D,), batch of (R, T))."""
        chosen: list[tuple[int, bool]] = []
        row, used = 0, 0
        while True:
            if not self.pending:
                self._draw(step)
            i, is_replay = self.pending[0]
            n = len(self._tokens(i)) + 1
            if used + n > self.seq_len:  # next-fit: start a new row
                if row + 1 >= self.rows:
                    break
                row, used = row + 1, 0
            self.pending.popleft()
            chosen.append((i, is_replay))
            used += n
        ids = np.array([i for i, _ in chosen], dtype=np.int64)
        batch = pack_documents(
            [self._tokens(i) for i in ids], self.seq_len, self.eos_id, self.pad_id, self.rows
        )
        self.stats.documents += len(ids)
        self.stats.replayed += sum(r for _, r in chosen)
        self.stats.tokens += batch.num_tokens
        self.stats.padding += batch.input_ids.numel() - batch.num_tokens
        self.stats.truncated_tokens += sum(max(0, len(self.token_lists[i]) - (self.seq_len - 1)) for i in ids)
        self._last = (step, ids, batch)
        return ids, batch

    def get_batch(self, step: int) -> dict[str, Any]:
        """Model inputs for ``step`` (:meth:`PackedBatch.model_inputs`), remembered for :meth:`feedback`."""
        _, batch = self.next_packed(step)
        return batch.model_inputs(self.isolate_documents)

    def feedback(self, step: int, logits: torch.Tensor, loss: float) -> torch.Tensor:
        """Per-document losses of ``step``'s batch from its ``logits`` (R, T, V). -> (D,)

        Updates the replay buffer's priorities and feeds ``loss`` (the batch's mean token
        loss) to the curriculum schedule.
        """
        if self._last is None or self._last[0] != step:
            raise ValueError(f"feedback for step {step} but the last batch drawn was for another step")
        _, ids, batch = self._last
        with torch.no_grad():
            doc_loss = per_document_loss(logits.detach(), batch.labels, batch.segment_ids, len(ids))  # (D,)
        if self.replay is not None:
            self.replay.update(ids.tolist(), doc_loss.tolist())
        self.sampler.schedule.observe(step, float(loss))
        return doc_loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "pending": list(self.pending),
            "stats": self.stats.to_dict(),
            "sampler": self.sampler.state_dict(),
            "replay": self.replay.state_dict() if self.replay is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.pending = deque(tuple(x) for x in state["pending"])
        self.stats = BatcherStats(**state["stats"])
        self.sampler.load_state_dict(state["sampler"])
        if self.replay is not None and state["replay"] is not None:
            self.replay.load_state_dict(state["replay"])
