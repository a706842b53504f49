"""The judge: runs the instrumented test code and decides every assert, away from the program.

Child code (standard library only). The judge is its own process, started next to the
program's (see :mod:`.child`), and never executes a line of the program: it holds the tests, the
expected values and the verdict channel's nonce, and reaches the program only through
:mod:`.channel`, as plain data or as opaque :class:`Remote` handles. So an ``==`` in an assert
compares builtin values the judge built itself, and no object of the program can say "equal".

Names (:func:`_bind`): each name the tests use is bound from trusted text first — what
``judge_code`` defines, what the test code's module-level imports bind (the import wins over a
program's function of the same name), the standard-library modules whose attributes the tests
read; builtins are the judge's, except an entry point named like a builtin
(:func:`_entry_builtins`); every other name is the program's: data is copied, anything else is a
:class:`Remote` handle. Nothing the program sends about an object makes the judge bind or import
an object of its own. Arguments of calls are copied; the tests' own functions and objects cannot
be passed to the program. The trust boundary and the naming rules are written out in
``docs/rewards.md``.

Handles: calls, attribute and item access, ``len``, iteration, ``str``, truth and
``isinstance`` against the program's classes run in the program's process; operators apply
only between two handles, comparisons only between two of one class. Any other comparison of a
handle, or ``in`` a handle, raises :class:`Undecidable` and fails the whole assert. In an
assert, the truth of a handle is False.

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
from .verdicts import Gone, Recorder, ResultRefused, Undecidable

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
    rec = Recorder(verdict_fd, job["nonce"], _CH, truth)
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

    ns: dict[str, object] = {"__name__": "__main__", "__builtins__": builtins}
    own: dict[str, object] = {}
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
