"""The judge: runs the instrumented test code and decides every assert, away from the program.

Child code (standard library only). The judge is its own process, started next to the
program's (see :mod:`.child`), and never executes a line of the program: it holds the tests, the
expected values and the verdict channel's nonce, and reaches the program only through
:mod:`.channel`, as plain data or as opaque :class:`Remote` handles. So an ``==`` in an assert
compares builtin values the judge built itself, and no object of the program can say "equal".

Names: each name the tests use is bound before the test code runs, from trusted text first:

- the tests' own names are never asked of the program: those that ``judge_code`` (trusted
  helpers, e.g. a HumanEval prompt's functions and imports) defines, those that the test code's
  module-level imports bind (``import math``, MBPP's ``test_imports``: the import wins over a
  program's function of the same name), and the standard-library modules whose attributes the
  tests read (``math.isclose(...)``), which the judge imports itself (the tests need not);
- builtins are the judge's (a program that defines ``abs`` must not answer the tests' ``abs(f(x)
  - y)``; for the calls on literals, ``assert sum(10, 15) == 6``, see :mod:`.instrument`), except
  an entry point named like a builtin, which is the program's (:func:`_entry_builtins`);
- every other name is the program's, looked up among its globals: data is copied, anything else
  (a function, a class, a module, an object) is a :class:`Remote` handle. So a function named like
  a standard-library module (``def statistics(xs)``) is the program's, as it would be in one
  interpreter. Nothing the program sends about an object (its kind, module or name, the bytes on
  the channel) makes the judge bind or import an object of its own: every call through a name
  the program supplied goes to the program;
- arguments of calls are copied (a function that changes its argument in place does not change
  the tests' object); the tests' own functions and objects cannot be passed to the program (the
  call raises ``TypeError``).

Handles: calls, attribute and item access, ``len``, iteration, ``str``, truth and
``isinstance`` against the program's classes run in the program's process; operators apply
only between two handles (and comparisons only between two of one class), so test data never
becomes an operand of the program's ``__eq__`` or ``__sub__``. A comparison of a handle with
anything else (the tests' data, a handle of another class), or ``in`` a handle, has no truthful
answer here: it raises :class:`Undecidable`, which fails the whole assert, never a False that
``not``, ``!=`` or ``is False`` could turn into a pass. In an assert, the truth of a handle is False.

Partial credit: the program's process gets ``budget_s`` of the judge's waiting in all. When it
dies, runs out of time or breaks the protocol, the assert being evaluated fails, the judge stops
running the test code, and every assert not decided by then fails. A pass counts only when the
top-level test statement it ran in completed: one cut short (see :class:`Recorder`) fails every
assert it ran, since an assert in its loop was never decided on the rounds it did not reach.
Exceptions raised in the program come back as the first builtin exception class in their MRO, by
name (never a class of the program), so ``except ValueError`` in a test still works (and
``except ParseError``, a class of the program, cannot match: catch its builtin base);
``StopIteration`` only as the end of a ``next()``, elsewhere a ``RuntimeError`` (as PEP 479 does
for generators: a call that raised it would otherwise end the tests' ``map`` or ``zip`` early,
and ``all(map(f, cases))`` pass). A result that is not data raises :class:`ResultRefused` and
the end of the program's process raises :class:`Gone` — both ``BaseException``\\ s, so a test's
``except Exception`` cannot take them for an expected error.

Nothing the program causes on this side (decoding its bytes, comparing, hashing or printing its
data, the tests' work on it) can stop the judge: whatever an assert raises, ``SystemExit``,
``RecursionError`` and ``MemoryError`` included, fails that assert, and the exceptions that are
not ordinary errors are counted by type in the report's notes.
"""

from __future__ import annotations

import _signal  # not signal, whose enum import costs every sandboxed process milliseconds
import builtins
import math
import os
import select
import time

from . import channel

_OPS = {
    "Eq": lambda a, b: a == b,
    "NotEq": lambda a, b: a != b,
    "Lt": lambda a, b: a < b,
    "LtE": lambda a, b: a <= b,
    "Gt": lambda a, b: a > b,
    "GtE": lambda a, b: a >= b,
    "In": lambda a, b: a in b,
    "NotIn": lambda a, b: a not in b,
}
_EXCEPTIONS = {
    name: cls for name, cls in vars(builtins).items() if isinstance(cls, type) and issubclass(cls, Exception)
}
_MISSING = object()


JUDGE_PROGRAM_DIED = 4  # the judge's exit status when the program's process exited under it


_stops = 0  # how many _Stop exceptions were made; Recorder.run_statement compares it


class _Stop(BaseException):
    """A stop of the judge's own: fails the assert it happens in, or else every assert the test
    statement under way has run, even where the tests' own ``except:`` swallows it."""

    def __init__(self, *args) -> None:
        global _stops
        super().__init__(*args)
        _stops += 1


class Gone(_Stop):
    """The program's process is gone (died, out of time, or broke the protocol)."""


class ResultRefused(_Stop):
    """The program answered with something that is not data (a function, too large, too deep)."""


class Undecidable(_Stop):
    """A comparison only the program could decide: a handle against the tests' data, handles of two
    classes, membership in a handle. Never a bool (``not`` or ``is False`` would turn a made-up
    False into a pass): it fails the whole assert, or stops the test statement it is in (failing
    every assert that statement ran)."""


class Channel:
    """The judge's end: one request, one reply, within the program's remaining time budget."""

    def __init__(self, requests_fd: int, replies_fd: int, budget_s: float, max_result_bytes: int) -> None:
        os.set_blocking(requests_fd, False)
        self.wfd, self.rfd, self.left = requests_fd, replies_fd, budget_s
        self.cap = max_result_bytes + 1024  # the reply's envelope around the value
        self.gone: str | None = None
        self.proxies: dict[int, Remote] = {}
        self.encoder = channel.Encoder(1 << 30, self._handle_of)

    def ask(self, op: str, *args):
        if self.gone:
            raise Gone(self.gone)
        try:
            payload = self.encoder.encode((op, *args))
        except channel.EncodeError as e:
            raise TypeError(f"cannot send this to the program: {e.reason}") from None
        start = time.monotonic()
        try:
            self._send(payload, start + self.left)
            reply = channel.Decoder(self._receive(start + self.left), self._proxy).decode()
        except channel.DecodeError as e:
            self.fail(f"protocol: {e}")
        finally:
            self.left -= time.monotonic() - start
        return self._unpack(reply, op)

    def quit(self) -> None:
        if not self.gone:
            try:
                os.write(self.wfd, channel.frame(self.encoder.encode(("quit",))))
            except OSError:
                pass

    def fail(self, why: str):
        """Mark the program gone (for good) and raise :class:`Gone`."""
        self.gone = why.replace("\n", " ")[:300]
        raise Gone(self.gone)

    def _send(self, payload: bytes, deadline: float) -> None:
        view = memoryview(channel.frame(payload))
        while view:
            self._wait(select.POLLOUT, self.wfd, deadline)
            try:
                view = view[os.write(self.wfd, view) :]
            except BlockingIOError:
                continue
            except OSError:
                self.fail("died")

    def _receive(self, deadline: float) -> bytes:
        head = self._read(4, deadline)
        n = int.from_bytes(head, "little")
        if n > self.cap:
            raise channel.DecodeError(f"a reply of {n} bytes (the cap is {self.cap})")
        return self._read(n, deadline)

    def _read(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            self._wait(select.POLLIN, self.rfd, deadline)
            try:
                chunk = os.read(self.rfd, n - len(buf))
            except OSError:
                chunk = b""
            if not chunk:
                self.fail("died")
            buf += chunk
        return bytes(buf)

    def _wait(self, event: int, fd: int, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left > 0:
            poller = select.poll()
            poller.register(fd, event)
            if poller.poll(math.ceil(left * 1000)):
                return
        self.fail("timeout")

    def _unpack(self, reply, op: str):
        if type(reply) is tuple and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if type(reply) is tuple and len(reply) == 2 and reply[0] == "refused" and type(reply[1]) is str:
            raise ResultRefused(reply[1])
        if type(reply) is tuple and len(reply) == 3 and reply[0] == "raise" and type(reply[2]) is tuple:
            raise _exception(reply[1], reply[2], op)
        self.fail("protocol: not a reply")

    def _proxy(self, ident: int, type_id: int) -> Remote:
        p = self.proxies.get(ident)
        if p is None:
            if len(self.proxies) >= 1 << 16:
                raise channel.DecodeError("too many handles")
            p = self.proxies[ident] = Remote.__new__(Remote)
            object.__setattr__(p, "_r1rl_id", ident)
            object.__setattr__(p, "_r1rl_type", type_id)
        return p

    def _handle_of(self, obj) -> tuple[int, int]:
        if isinstance(obj, Remote):
            return obj._r1rl_id, obj._r1rl_type
        raise channel.EncodeError(f"a {type(obj).__name__} of the tests is not data")


def _exception(names, args: tuple, op: str) -> Exception:
    """The first builtin exception class among ``names`` that takes ``args``, to raise in the judge;
    the end of an iteration only as the answer to ``next``."""
    if type(names) is tuple:
        for name in names:
            cls = _EXCEPTIONS.get(name) if type(name) is str else None
            if cls is None:
                continue
            if issubclass(cls, (StopIteration, StopAsyncIteration)) and op != "next":
                return RuntimeError(f"the program raised {name} outside next()")
            try:
                return cls(*args)
            except Exception:
                continue
    first = names[0] if type(names) is tuple and names and type(names[0]) is str else "an exception"
    return RuntimeError(f"the program raised {first}")


_CH: Channel  # this judge's channel (one per process), set by main()


class Remote(channel.Handle):
    """The judge's handle to an object in the program's process (see the module docstring)."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        return _CH.ask("call", self, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("_r1rl_"):
            raise AttributeError(name)
        return _CH.ask("getattr", self, name)

    def __setattr__(self, name: str, value) -> None:
        _CH.ask("setattr", self, name, value)

    def __delattr__(self, name: str) -> None:
        _CH.ask("delattr", self, name)

    def __getitem__(self, key):
        return _CH.ask("getitem", self, key)

    def __setitem__(self, key, value) -> None:
        _CH.ask("setitem", self, key, value)

    def __delitem__(self, key) -> None:
        _CH.ask("delitem", self, key)

    def __len__(self) -> int:
        return _typed(_CH.ask("len", self), int, "len")

    def __iter__(self):
        return _CH.ask("iter", self)

    def __next__(self):
        return _CH.ask("next", self)

    def __bool__(self) -> bool:
        return _typed(_CH.ask("bool", self), bool, "bool")

    def __str__(self) -> str:
        return _typed(_CH.ask("str", self), str, "str")

    def __repr__(self) -> str:
        return _typed(_CH.ask("repr", self), str, "repr")

    __hash__ = object.__hash__  # by identity, in the judge: the program's __hash__ never runs here

    def __instancecheck__(self, obj) -> bool:
        return _typed(_CH.ask("isinstance", obj, self), bool, "isinstance")

    def __subclasscheck__(self, cls) -> bool:
        return _typed(_CH.ask("issubclass", cls, self), bool, "issubclass")


def _typed(value, kind: type, what: str):
    if type(value) is not kind:
        raise TypeError(f"{what}() of a program object returned {type(value).__name__}, not {kind.__name__}")
    return value


def _binary(name: str, reflected: bool = False, compare: bool = False):
    def method(self, other):
        if compare and not (isinstance(other, Remote) and other._r1rl_type == self._r1rl_type):
            raise Undecidable(f"{name}: a program object against the tests' data or another class")
        if not isinstance(other, Remote):
            return NotImplemented
        return _CH.ask("op", name, other, self) if reflected else _CH.ask("op", name, self, other)

    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor"):
    _op = _name + "_" if _name in ("and", "or") else _name
    setattr(Remote, f"__{_name}__", _binary(_op))
    setattr(Remote, f"__r{_name}__", _binary(_op, reflected=True))
for _name in ("lshift", "rshift"):
    setattr(Remote, f"__{_name}__", _binary(_name))
    setattr(Remote, f"__r{_name}__", _binary(_name, reflected=True))
for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(Remote, f"__{_name}__", _binary(_name, compare=True))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(Remote, f"__{_name}__", lambda self, _n=_name: _CH.ask("op", _n, self))


# --- the asserts --------------------------------------------------------------------------------


def compare(op: str, a, b) -> bool:
    """An assert's comparison: a handle compares only with a handle of the same class (the
    program decides); with anything else, or as the container of ``in``, it is :class:`Undecidable`."""
    if isinstance(a, Remote) or isinstance(b, Remote):
        same = isinstance(a, Remote) and isinstance(b, Remote) and a._r1rl_type == b._r1rl_type
        if not same or op in ("In", "NotIn"):
            raise Undecidable(f"{op}: a program object against the tests' data or another class")
    return _OPS[op](a, b)


def truth(value) -> bool:
    """An assert's verdict on its value: a handle's truth would be the program's word."""
    return False if isinstance(value, Remote) else bool(value)


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

    def __init__(self, fd: int, nonce: str) -> None:
        self.fd, self.nonce, self.reported, self.notes = fd, nonce, set(), set()
        self.raised: dict[str, int] = {}
        self.passing: set[int] = set()  # asserts passed in the statement under way

    def run_statement(self, k: int, code, ns: dict) -> None:
        """Run top-level statement ``k``; fail every assert it ran unless it completed."""
        self.passing, stops, completed = set(), _stops, False
        self.line(f"begin {k}")
        try:
            exec(code, ns)
            completed = True
        except BaseException as e:
            self.count(e)
        if not completed or _stops != stops or _CH.gone:
            for idx in sorted(self.passing):
                self.verdict(idx, False)
        self.line(f"done {k}")

    def check(self, idx: int, fn) -> None:
        global _stops
        ok, gone, stops = False, None, _stops
        if not _CH.gone:
            try:
                ok = truth(fn())
            except Gone as e:
                gone = e
            except ResultRefused as e:
                self.note(f"refused {e}")
            except Undecidable as e:
                self.note(f"undecidable {e}")
            except BaseException as e:
                self.count(e)
        # A stop within the assert fails it, even where the tests' own code caught it, and no more.
        ok, _stops = ok and _stops == stops and not _CH.gone, stops
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


# --- the judge's run ------------------------------------------------------------------------------


def run(job: dict, verdict_fd: int, requests_fd: int, replies_fd: int) -> int:
    """Bind the names, run every test statement, report; the exit status (3: the program went away).

    A failure of the judge's own machinery is reported as a ``crash`` line (the parent raises):
    nothing the program does can cause one. Its replies go through :meth:`Channel.ask` and
    everything done with them runs under :meth:`Recorder.check` or a guard that counts what it
    raised; a program that shares the judge's uid (``basic`` mode without root) could send it
    SIGINT, which the judge ignores.
    """
    global _CH
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _CH = Channel(requests_fd, replies_fd, job["budget_s"], job["max_result_bytes"])
    rec = Recorder(verdict_fd, job["nonce"])
    try:
        _run(job, rec)
    except BaseException as e:
        rec.line(f"crash {type(e).__name__}: {e}")
        return 1
    if _CH.gone == "died":
        return JUDGE_PROGRAM_DIED  # its init still reports how it ended: the supervisor waits for that
    return 3 if _CH.gone else 0


def _run(job: dict, rec: Recorder) -> None:
    import marshal

    ns, own = {"__name__": "__main__", "__builtins__": builtins}, {}
    if job["judge_code"] is not None:
        try:
            exec(marshal.loads(job["judge_code"]), ns)
        except BaseException as e:
            rec.note(f"judge_code raised {type(e).__name__}")
    _bind(job, ns, own, rec)
    ns.update(
        __r1rl_check__=rec.check,
        __r1rl_cmp__=compare,
        __r1rl_own__=lambda n: own.get(n, getattr(builtins, n)),
    )
    for k, code in enumerate(marshal.loads(job["codes"])):
        if _CH.gone:
            break
        rec.run_statement(k, code, ns)
    _CH.quit()
    if _CH.gone:
        rec.line(f"gone {_CH.gone}")
    if rec.raised:
        rec.line("raised in the tests: " + ", ".join(f"{k} x{v}" for k, v in sorted(rec.raised.items())))
    rec.line("end")


def _bind(job: dict, ns: dict, own: dict, rec: Recorder) -> None:
    """Bind the names the tests use in their namespace ``ns`` (see the module docstring); the
    program's functions under a builtin's name go to ``own``, for the calls on literals only,
    except an entry point named like a builtin (:func:`_entry_builtins`), bound in both."""
    for module in job["modules"]:  # read from the test code's text, never from the program
        if module not in ns:
            try:
                ns[module] = __import__(module)
            except BaseException as e:  # as if the tests' own ``import`` had failed
                rec.note(f"the tests' module {module} cannot be imported ({type(e).__name__})")
    tests_own = set(job["imports"])
    entry = _entry_builtins(job, ns)
    for name, sole in entry.items():  # until the program's own is found: never the builtin
        why = (
            f"the entry point {name} is not the program's"
            if sole
            else f"{name} may be the entry point or a helper"
        )
        ns[name] = own[name] = _Undecided(why)
    wanted = [n for n in job["names"] if n not in ns and n not in tests_own] + [n for n in entry if entry[n]]
    if not wanted:
        return
    try:
        found = _CH.ask("load", wanted)
        if type(found) is not dict:
            _CH.fail("protocol: not a name table")
    except BaseException as e:  # gone, or a result it refused: no name of the program is bound
        rec.count(e)
        return
    for name in wanted:
        value = found.get(name, _MISSING)
        if value is _MISSING:
            continue
        if name in _BUILTIN_NAMES:
            if isinstance(value, Remote):
                own[name] = value
        else:
            ns[name] = value
    for name, sole in entry.items():
        if sole and name in found:
            ns[name] = own[name] = found[name]


def _entry_builtins(job: dict, ns: dict) -> dict[str, bool]:
    """Builtin names that stand for the program's entry point (``ns``: the tests' own names so
    far); True where the name is the program's, False where it cannot be told from a helper.

    The entry point is named like a builtin when the tests hand that name to their own function
    (``check(round)``), or when they name no other function the judge does not define: then, as
    in one interpreter where the program's ``def`` shadows the builtin, the name is the program's.
    A single such name is the program's function (a stand-in that fails its asserts when the
    program defines none: the builtin must never answer for it); several cannot be told from the
    helpers the tests also call (``r = pow(2, 0.5); assert abs(r - 1.4142) < 1e-4``), so each
    fails the asserts that use it.
    """
    subjects = [n for n in job["subjects"] if n not in ns]
    if subjects:
        names = subjects
    elif not any(n not in ns for n in job["free"]):
        names = [n for n in job["candidates"] if n not in ns]
    else:
        return {}
    sole = len(names) == 1 or bool(subjects)
    return dict.fromkeys(names, sole)


class _Undecided:
    """Stands for a name the judge cannot bind truthfully: calling it fails the assert."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why

    def __call__(self, *args, **kwargs):
        raise Undecidable(self.why)


_BUILTIN_NAMES = frozenset(vars(builtins))
