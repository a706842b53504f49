"""The program's process: run a program, or run a solution and answer the judge's requests.

Child code (standard library only). This process holds the program and nothing of the tests:
it receives only what the judge chooses to send (names to look up, the arguments of calls) and
answers with values encoded by :mod:`.channel`. Whatever it answers, it cannot decide a verdict;
a program that rewrites this code, writes its own bytes or exits only loses the asserts that
have not been decided yet.

Requests are tuples ``(op, *args)``; replies are ``("ok", value)``, ``("raise", names,
args)`` (the builtin exception classes in the exception's MRO, for the judge to re-raise) or
``("refused", reason)`` (a result that is not data, too large or too deep).
"""

from __future__ import annotations

import builtins
import os
import sys

from . import channel

TYPE_CHECKING = False  # typing is not imported in child code; a type checker reads this name as True
if TYPE_CHECKING:
    from typing import NoReturn

_REQUEST_CAP = 1 << 30  # the judge is trusted; this only bounds a broken stream
# The results of these requests may be functions and classes (sent as handles); the result of
# anything else, a call above all, must be data or an object.
_CODE_OK = ("load", "getattr")
_BINARY = {
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_", "or_", "xor",
    "lshift", "rshift", "eq", "ne", "lt", "le", "gt", "ge",
}  # fmt: skip
_UNARY = {"neg", "pos", "abs", "invert"}


class Objects:
    """The program's objects the judge holds handles to, by number (kept alive until exit)."""

    def __init__(self) -> None:
        self.by_number: list = []
        self.numbers: dict[int, int] = {}
        self.types: dict[int, int] = {}
        self.type_refs: list = []

    def register(self, obj) -> tuple[int, int]:
        n = self.numbers.get(id(obj))
        if n is None:
            n = self.numbers[id(obj)] = len(self.by_number)
            self.by_number.append(obj)
        t = type(obj)
        tn = self.types.get(id(t))
        if tn is None:
            tn = self.types[id(t)] = len(self.type_refs)
            self.type_refs.append(t)
        return n, tn

    def resolve(self, n: int, type_id: int):
        if not 0 <= n < len(self.by_number):
            raise channel.DecodeError(f"no object number {n}")
        return self.by_number[n]


def exit_builtins() -> None:
    import _sitebuiltins

    # ``-S`` skips site.py, which is what defines exit() and quit().
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


def main_module() -> dict:
    import types

    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    sys.argv = ["<solution>"]
    return main.__dict__


def print_exception(e: BaseException, code: str) -> None:
    import linecache
    import traceback

    linecache.cache["<solution>"] = (len(code), None, code.splitlines(True), "<solution>")
    tb = e.__traceback__.tb_next if e.__traceback__ else None  # drop our own exec() frame
    traceback.print_exception(type(e), e, tb)
    sys.stderr.flush()


def run_program(code: str) -> None:
    exit_builtins()
    ns = main_module()
    try:
        exec(compile(code, "<solution>", "exec"), ns)
    except SystemExit:
        raise
    except BaseException as e:
        print_exception(e, code)
        sys.exit(1)
    sys.exit(0)  # a normal interpreter exit: joins threads, runs atexit, flushes


def serve(code: str, requests_fd: int, replies_fd: int, max_result_bytes: int) -> None:
    """Run ``code`` as ``__main__``, then answer requests until told to quit (never returns).

    The exit status is the one a plain run of the program would have had (0, 1 after an
    uncaught exception, or its ``SystemExit`` code), so the caller can report it; a program
    that exits while loading still gets its requests answered, so leaving early skips nothing.
    """
    exit_builtins()
    ns = main_module()
    status = _load(code, ns)
    objects = Objects()
    while True:
        try:
            frame = channel.read_frame(requests_fd, _REQUEST_CAP)
        except (OSError, channel.DecodeError):
            frame = None
        if frame is None:  # the judge is done or gone
            _exit(status)
        request = channel.Decoder(frame, objects.resolve).decode()
        if request[0] == "quit":
            _exit(status)
        try:
            channel.write_frame(replies_fd, _answer(request, ns, objects, max_result_bytes))
        except OSError:  # the judge stopped listening
            _exit(status)


def _load(code: str, ns: dict) -> int:
    try:
        exec(compile(code, "<solution>", "exec"), ns)
    except SystemExit as e:
        if e.code is None or type(e.code) is int:
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException as e:
        print_exception(e, code)
        return 1
    return 0


def _exit(status: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(status & 0xFF)


def _answer(request: tuple, ns: dict, objects: Objects, max_result_bytes: int) -> bytes:
    op = request[0]
    try:
        value = _perform(op, request[1:], ns)
    except BaseException as e:
        return _encode_exception(e, max_result_bytes)
    encoder = channel.Encoder(max_result_bytes, objects.register, refuse_code=op not in _CODE_OK)
    try:
        return encoder.encode(("ok", value))
    except channel.EncodeError as e:
        reason = e.reason
    except BaseException as e:  # e.g. a RecursionError while walking the value
        reason = f"could not be sent ({type(e).__name__})"
    if op == "load":  # leave out the names whose values cannot be sent, keep the others
        return encoder.encode(("ok", {k: v for k, v in value.items() if _sendable(encoder, v)}))
    return channel.Encoder(max_result_bytes).encode(("refused", reason[:500]))


def _sendable(encoder: channel.Encoder, value) -> bool:
    try:
        encoder.encode(value)
    except BaseException:
        return False
    return True


def _perform(op: str, args: tuple, ns: dict):
    import operator

    if op == "load":
        return {name: ns[name] for name in args[0] if name in ns}
    if op == "call":
        target, pos, kw = args
        return target(*pos, **kw)
    if op in ("getattr", "setattr", "delattr"):
        return getattr(builtins, op)(*args)
    if op == "getitem":
        return args[0][args[1]]
    if op == "setitem":
        args[0][args[1]] = args[2]
        return None
    if op == "delitem":
        del args[0][args[1]]
        return None
    if op in ("len", "iter", "next", "bool", "str", "repr", "isinstance", "issubclass"):
        return getattr(builtins, op)(*args)
    if op == "op" and (args[0] in _BINARY and len(args) == 3 or args[0] in _UNARY and len(args) == 2):
        return getattr(operator, args[0])(*args[1:])
    raise ValueError(f"unknown request {op!r}")


def _encode_exception(e: BaseException, max_result_bytes: int) -> bytes:
    """``("raise", names, args)``: the builtin classes in the MRO, and the arguments if they are
    data (else the message), for the judge to rebuild the exception from builtins only."""
    names = []
    for cls in type(e).__mro__:
        name = getattr(cls, "__name__", "")
        if type(name) is str and getattr(builtins, name, None) is cls:
            names.append(name)
    encoder = channel.Encoder(min(max_result_bytes, 1 << 16))
    try:
        return encoder.encode(("raise", tuple(names), tuple(e.args)))
    except BaseException:
        pass
    try:
        message = str(e)
    except BaseException:
        message = ""
    return encoder.encode(("raise", tuple(names), (message[:1000] if type(message) is str else "",)))
