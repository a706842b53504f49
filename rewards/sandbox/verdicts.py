"""The judge's verdicts: one line per assert and outcome, and the stops that fail them.

Child code (standard library only), used by :mod:`.judge`: every line carries the run's nonce and
goes to the verdict file, whose descriptor only the judge holds.
"""

from __future__ import annotations

import os


class _Stop(BaseException):
    """A stop of the judge's own: fails the assert it happens in, or else every assert the test
    statement under way has run, even where the tests' own ``except:`` swallows it."""

    made = 0  # how many were made: Recorder compares the count before and after

    def __init__(self, *args) -> None:
        super().__init__(*args)
        _Stop.made += 1


class Gone(_Stop):
    """The program's process is gone (died, out of time, or broke the protocol)."""


class ResultRefused(_Stop):
    """The program answered with something that is not data (a function, too large, too deep)."""


class Undecidable(_Stop):
    """A comparison only the program could decide: a handle against the tests' data, handles of two
    classes, membership in a handle. Never a bool (``not`` or ``is False`` would turn a made-up
    False into a pass): it fails the whole assert, or stops the test statement it is in (failing
    every assert that statement ran)."""


class Recorder:
    """Writes ``<nonce> i P|F`` once per assert and outcome; an assert passes if it never failed and
    every top-level test statement it ran in completed.

    Each statement is written ``begin k`` ... ``done k``. One that raises (the program's error,
    its end, a refused result or an undecidable comparison outside an assert, the tests' own
    error) or meets a stop of the judge's that the tests swallow was cut short: an assert in a
    loop that passed on its first rounds was never decided on the rest, so every assert it ran
    fails (as in one interpreter, where the exception ends the test). A statement the judge never
    got through (killed on its wall clock) has no ``done``: the parent fails the asserts it could
    have run. Counts, by type, the exceptions that are not ordinary errors (``SystemExit``,
    ``KeyboardInterrupt``, ``RecursionError``, ``MemoryError`` ...) that failed an assert or stopped
    a test statement, for one note at the end.
    """

    def __init__(self, fd: int, nonce: str, channel, truth) -> None:
        """``channel``: the judge's (its ``gone``); ``truth``: an assert's value as a verdict."""
        self.fd, self.nonce = fd, nonce
        self.reported: set[tuple[int, bool]] = set()
        self.notes: set[str] = set()
        self.channel, self.truth = channel, truth
        self.raised: dict[str, int] = {}
        self.passing: set[int] = set()  # asserts passed in the statement under way

    def run_statement(self, k: int, code, ns: dict) -> None:
        """Run top-level statement ``k``; fail every assert it ran unless it completed."""
        self.passing, stops, completed = set(), _Stop.made, False
        self.line(f"begin {k}")
        try:
            exec(code, ns)
            completed = True
        except BaseException as e:
            self.count(e)
        if not completed or _Stop.made != stops or self.channel.gone:
            for idx in sorted(self.passing):
                self.verdict(idx, False)
        self.line(f"done {k}")

    def check(self, idx: int, fn) -> None:
        ok, gone, stops = False, None, _Stop.made
        if not self.channel.gone:
            try:
                ok = self.truth(fn())
            except Gone as e:
                gone = e
            except ResultRefused as e:
                self.note(f"refused {e}")
            except Undecidable as e:
                self.note(f"undecidable {e}")
            except BaseException as e:
                self.count(e)
        # A stop within the assert fails it, even where the tests' own code caught it, and no more.
        ok, _Stop.made = ok and _Stop.made == stops and not self.channel.gone, stops
        self.verdict(idx, ok)
        if gone is not None:
            raise gone

    def verdict(self, idx: int, ok: bool) -> None:
        if ok:
            self.passing.add(idx)
        if (idx, ok) not in self.reported:
            self.reported.add((idx, ok))
            self.line(f"{idx} {'P' if ok else 'F'}")

    def count(self, e: BaseException) -> None:
        if isinstance(e, (Gone, ResultRefused, Undecidable)):  # reported on their own
            return
        if not isinstance(e, Exception) or isinstance(e, (RecursionError, MemoryError)):
            name = type(e).__name__
            self.raised[name] = self.raised.get(name, 0) + 1

    def note(self, text: str) -> None:
        if len(self.notes) < 5 and text not in self.notes:
            self.notes.add(text)
            self.line(text[:300])

    def line(self, text: str) -> None:
        text = " ".join(text.splitlines())  # every break the reader splits at, not only "\n"
        os.write(self.fd, f"{self.nonce} {text}\n".encode("utf-8", "replace"))
