"""The wire between the judge and the program's process: plain data only, decoded within bounds.

Both ends run inside the sandbox (this module is child code: standard library only, no import of
the rest of the package). The program's end writes bytes it fully controls, so the judge's
:class:`Decoder` trusts none of them: it builds only exact builtin values (and opaque
:class:`Handle` references), checks every length against the bytes actually present before
allocating, stops at :data:`MAX_DEPTH`, caps the items it hashes, and refuses anything else as a
protocol error. Never ``pickle`` (which runs code) nor ``marshal`` (which can build code objects,
cycles and malformed objects).

How a value of the program travels (the encoder's choice; the decoder's guarantees hold
whatever bytes arrive):

===========================================  ===================================================
the program's value                          what the judge receives
===========================================  ===================================================
``None``, ``bool``, ``int``, ``float``,      the same builtin value; a float keeps its bits, so
``complex``, ``str``, ``bytes``,             NaN stays NaN (and, as IEEE 754 says, unequal to
``bytearray``, ``range``                     everything, itself included: since identity does
                                             not travel, ``[nan] == [nan]`` is False)
``list``, ``tuple``, ``dict``, ``set``,      the same container, items converted one by one
``frozenset``
``Counter``, ``OrderedDict``, ``deque``      the same ``collections`` type (a deque keeps its
                                             ``maxlen``)
``defaultdict``                              a ``defaultdict`` whose factory is kept when it is
                                             a builtin type (``int``, ``list``, ``set`` ...);
                                             any other factory arrives as ``None``
a namedtuple                                 a namedtuple of the same name and fields
a subclass of one of the above that keeps    its base type's value (extra attributes stay
the base's comparison, truth, length and     behind)
containment methods
a function, method, class or module as       refused: the call fails with ``ResultRefused``
the result of a call
anything else (an instance of the            an opaque :class:`Handle`: its methods and
program's classes, a generator ...)          attributes run in the program's process
===========================================  ===================================================

Frames are a 4-byte little-endian length and an encoded value; a frame longer than the cap the
reader was given is a protocol error.
"""

from __future__ import annotations

import os
import struct
import sys

MAX_DEPTH = 64
# Sets, frozensets and dict keys hash what they hold, and CPython hashes an int as itself modulo
# 2**61 - 1, so a program can send ints that all collide: building a set of n of them takes
# O(n**2) time (16,000 took 2 s). Capping the items hashed per value bounds that to ~0.1 s.
MAX_HASHED = 4096

_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_C128 = struct.Struct("<dd")


class DecodeError(Exception):
    """The bytes are not a well-formed value within the caps (a protocol error)."""


class EncodeError(Exception):
    """The value cannot be sent: too large, too deep, or not data (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Handle:
    """Base of the judge's opaque references to objects that live in the program's process.

    Holds two numbers the program chose: its object's (``_r1rl_id``), which only ever goes back to
    the program to name that object, and its type's (``_r1rl_type``: the judge asks the program to
    compare two handles only when they share one). Nothing else about the object travels: not its
    kind, module or name, which the judge could only have taken on the program's word.
    """

    __slots__ = ("_r1rl_id", "_r1rl_type")


# --- encoding -----------------------------------------------------------------------------------

_ATOM_BASES = (int, float, complex, str, bytes, bytearray)  # bool cannot be subclassed
_CONTAINER_BASES = (list, tuple, dict, set, frozenset)
# Methods a subclass must not override to travel as its base type's value.
_VALUE_METHODS = (
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__contains__",
    "__bool__",
    "__len__",
)


class Encoder:
    """Encodes a value; objects that are not data go through ``other(obj) -> (id, type id)``.

    ``refuse_code``: functions, methods, classes and modules are refused rather than sent as
    handles (the result of a call must be data or an object, never code). The encoder stops as
    soon as the output passes ``max_bytes`` or the nesting passes :data:`MAX_DEPTH`.
    """

    def __init__(self, max_bytes: int, other=None, refuse_code: bool = False) -> None:
        self.max_bytes, self.other, self.refuse_code = max_bytes, other, refuse_code
        self.parts: list[bytes] = []
        self.size = 0

    def encode(self, value) -> bytes:
        self.parts, self.size = [], 0
        self._value(value, 0)
        return b"".join(self.parts)

    def _put(self, b: bytes) -> None:
        self.size += len(b)
        if self.size > self.max_bytes:
            raise EncodeError(f"larger than {self.max_bytes} bytes")
        self.parts.append(b)

    def _value(self, x, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise EncodeError(f"nested deeper than {MAX_DEPTH} levels")
        t = type(x)
        if x is None:
            self._put(b"N")
        elif t is bool:
            self._put(b"T" if x else b"F")
        elif t is int:
            self._int(x)
        elif t is float:
            self._put(b"D" + _F64.pack(x))
        elif t is str:
            self._bytes(b"S", str.encode(x, "utf-8", "surrogatepass"))
        elif t in _SEQUENCES:
            self._items(_SEQUENCES[t], list.__iter__(x) if t is list else iter(x), len(x), depth)
        elif t is dict:
            self._pairs(b"M", x, depth)
        else:
            self._rare(x, t, depth)

    def _rare(self, x, t, depth: int) -> None:
        col = _collections_types()
        if t is complex:
            self._put(b"J" + _C128.pack(x.real, x.imag))
        elif t is bytes or t is bytearray:
            self._bytes(b"B" if t is bytes else b"A", bytes(x))
        elif t is range:
            self._put(b"R")
            for v in (x.start, x.stop, x.step):
                self._int(v)
        elif t is col.get("Counter") or t is col.get("OrderedDict"):
            self._pairs(b"C" if t is col.get("Counter") else b"O", x, depth)
        elif t is col.get("defaultdict"):
            factory = x.default_factory
            name = factory.__name__ if any(factory is f for f in _FACTORIES.values()) else ""
            self._bytes(b"Y", name.encode())
            self._pairs(b"", x, depth)
        elif t is col.get("deque"):
            self._put(b"Q")
            self._int(-1 if x.maxlen is None else x.maxlen)
            self._items(b"", iter(x), len(x), depth)
        elif issubclass(t, tuple) and _is_namedtuple(t):
            self._put(b"P")
            self._bytes(b"", str.encode(str(t.__name__), "utf-8", "surrogatepass"))
            self._items(b"", (str(f) for f in t._fields), len(t._fields), depth, strings=True)
            self._items(b"", tuple.__iter__(x), tuple.__len__(x), depth)
        elif (base := _value_base(t)) is not None:
            self._value(_as_base(x, base), depth)
        else:
            self._other(x)

    def _other(self, x) -> None:
        if self.refuse_code and _is_code(x):
            raise EncodeError(f"a {_kind_word(x)} ({_name_of(x)}) is not data")
        if self.other is None:
            raise EncodeError(f"a {type(x).__name__} is not data")
        ident, type_id = self.other(x)
        self._put(b"H" + _I64.pack(ident) + _I64.pack(type_id))

    def _int(self, x: int) -> None:
        n = (int.bit_length(x) + 8) // 8  # room for the sign bit
        if n > self.max_bytes:
            raise EncodeError(f"larger than {self.max_bytes} bytes")
        self._bytes(b"I", int.to_bytes(x, n, "little", signed=True))

    def _bytes(self, tag: bytes, b: bytes) -> None:
        self._put(tag + _U32.pack(len(b)))
        self._put(b)

    def _items(self, tag: bytes, it, n: int, depth: int, strings: bool = False) -> None:
        self._put(tag + _U32.pack(n))
        count = 0
        for v in it:
            count += 1
            if strings:
                self._bytes(b"", str.encode(v, "utf-8", "surrogatepass"))
            else:
                self._value(v, depth + 1)
        if count != n:
            raise EncodeError("changed size while being sent")

    def _pairs(self, tag: bytes, d, depth: int) -> None:
        items = list(dict.items(d))
        self._put(tag + _U32.pack(len(items)))
        for k, v in items:
            self._value(k, depth + 1)
            self._value(v, depth + 1)


_SEQUENCES: dict[type, bytes] = {list: b"L", tuple: b"U", set: b"E", frozenset: b"Z"}
_FACTORIES = {
    t.__name__: t for t in (int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset)
}


def _collections_types() -> dict[str, type | None]:
    """The ``collections`` types by name, only if the program (or the judge) imported them."""
    out: dict[str, type | None] = {}
    c = sys.modules.get("_collections")
    if c is not None:
        out.update(deque=c.deque, defaultdict=c.defaultdict, OrderedDict=getattr(c, "OrderedDict", None))
    c = sys.modules.get("collections")
    if c is not None:
        out.update(Counter=c.Counter, OrderedDict=c.OrderedDict, deque=c.deque, defaultdict=c.defaultdict)
    return out


def _is_namedtuple(t) -> bool:
    fields = t.__dict__.get("_fields")
    return (
        isinstance(fields, tuple)
        and all(type(f) is str and f.isidentifier() for f in fields)
        and type(t.__dict__.get("_make")) is classmethod
    )


def _value_base(t):
    """The builtin base of ``t`` if ``t`` keeps the base's comparison, truth, length, containment."""
    for base in _ATOM_BASES + _CONTAINER_BASES:
        if issubclass(t, base):
            if all(getattr(t, m, None) is getattr(base, m, None) for m in _VALUE_METHODS):
                return base
            return None
    return None


def _as_base(x, base):
    """A copy of ``x`` as its exact base type, read through the base's own methods."""
    if base is dict:
        return dict(dict.items(x))
    if base in (list, tuple, set, frozenset):
        return base(base.__iter__(x))
    if base is str:
        return str.__str__(x)
    if base is int:
        return int.__int__(x)
    if base is float:
        return float.__float__(x)
    if base is complex:
        return complex(float(complex.real.__get__(x)), float(complex.imag.__get__(x)))
    return base(memoryview(x))  # bytes, bytearray


def _is_code(x) -> bool:
    import types

    kinds = (
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        types.MethodWrapperType,
        types.WrapperDescriptorType,
        types.MethodDescriptorType,
        types.ModuleType,
        type,
    )
    return isinstance(x, kinds) or type(x).__name__ == "partial"


def _kind_word(x) -> str:
    import types

    if isinstance(x, type):
        return "class"
    if isinstance(x, types.ModuleType):
        return "module"
    return "function"


def _name_of(x) -> str:
    name = getattr(x, "__qualname__", None) or getattr(x, "__name__", None) or type(x).__name__
    return str(name)[:80] if type(name) is str else type(x).__name__


# --- decoding -----------------------------------------------------------------------------------


class Decoder:
    """Decodes one value from untrusted bytes into exact builtin values and handles.

    ``handle(ident, type_id)`` makes the judge's reference for an ``H`` item (the program's end
    passes a resolver of its own numbers instead). Every failure is a :class:`DecodeError`, whatever
    the bytes make the building of a value raise (a namedtuple's field names that Python refuses,
    a value too large for memory ...).
    """

    def __init__(self, data: bytes, handle=None) -> None:
        self.data, self.pos, self.handle, self.hashed = data, 0, handle, 0

    def decode(self):
        try:
            value = self._value(0)
        except DecodeError:
            raise
        except Exception as e:  # e.g. an unhashable set item, RecursionError, MemoryError
            raise DecodeError(f"{type(e).__name__}: {_message(e)}") from None
        if self.pos != len(self.data):
            raise DecodeError("trailing bytes after the value")
        return value

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise DecodeError("truncated value")
        b = self.data[self.pos : end]
        self.pos = end
        return b

    def _count(self) -> int:
        n = _U32.unpack(self._take(4))[0]
        if n > len(self.data) - self.pos:  # every item takes at least one byte
            raise DecodeError("a length larger than the frame")
        return n

    def _blob(self) -> bytes:
        return self._take(self._count())

    def _str(self) -> str:
        return self._blob().decode("utf-8", "surrogatepass")

    def _int(self) -> int:
        if self._take(1) != b"I":
            raise DecodeError("expected an int")
        return int.from_bytes(self._blob(), "little", signed=True)

    def _value(self, depth: int):
        if depth > MAX_DEPTH:
            raise DecodeError(f"nested deeper than {MAX_DEPTH} levels")
        tag = self._take(1)
        simple = _SIMPLE.get(tag)
        if simple is not None:
            return simple[0]
        if tag == b"I":
            return int.from_bytes(self._blob(), "little", signed=True)
        if tag == b"D":
            return _F64.unpack(self._take(8))[0]
        if tag == b"S":
            return self._str()
        if tag in (b"L", b"U"):
            items = [self._value(depth + 1) for _ in range(self._count())]
            return items if tag == b"L" else tuple(items)
        if tag in (b"E", b"Z"):
            items = self._hashable(self._count(), depth)
            return set(items) if tag == b"E" else frozenset(items)
        if tag == b"M":
            return self._dict(depth)
        return self._rare(tag, depth)

    def _rare(self, tag: bytes, depth: int):
        if tag == b"J":
            return complex(*_C128.unpack(self._take(16)))
        if tag == b"B":
            return self._blob()
        if tag == b"A":
            return bytearray(self._blob())
        if tag == b"R":
            return range(self._int(), self._int(), self._int())
        if tag in (b"C", b"O", b"Q", b"Y"):
            return self._collection(tag, depth)
        if tag == b"P":
            return self._namedtuple(depth)
        if tag == b"H" and self.handle is not None:
            ident, type_id = _I64.unpack(self._take(8))[0], _I64.unpack(self._take(8))[0]
            return self.handle(ident, type_id)
        raise DecodeError(f"unknown tag {tag!r}")

    def _hashable(self, n: int, depth: int) -> list:
        self.hashed += n
        if self.hashed > MAX_HASHED:
            raise DecodeError(f"more than {MAX_HASHED} set items and dict keys in one value")
        return [self._value(depth + 1) for _ in range(n)]

    def _dict(self, depth: int) -> dict:
        n = self._count()
        self.hashed += n
        if self.hashed > MAX_HASHED:
            raise DecodeError(f"more than {MAX_HASHED} set items and dict keys in one value")
        out = {}
        for _ in range(n):
            k = self._value(depth + 1)
            out[k] = self._value(depth + 1)
        return out

    def _collection(self, tag: bytes, depth: int):
        import collections

        if tag == b"C":
            return collections.Counter(self._dict(depth))
        if tag == b"O":
            return collections.OrderedDict(self._dict(depth).items())
        if tag == b"Q":
            maxlen = self._int()
            items = [self._value(depth + 1) for _ in range(self._count())]
            return collections.deque(items, None if maxlen < 0 else maxlen)
        factory = _FACTORIES.get(self._str())
        return collections.defaultdict(factory, self._dict(depth))

    def _namedtuple(self, depth: int):
        name = self._str()
        fields = tuple(self._str() for _ in range(self._count()))
        items = [self._value(depth + 1) for _ in range(self._count())]
        return _namedtuple_type(name, fields)._make(items)


def _message(e: Exception) -> str:
    try:
        return str(e)[:200]
    except Exception:
        return ""


_SIMPLE = {b"N": (None,), b"T": (True,), b"F": (False,)}
_NAMEDTUPLES: dict = {}


def _namedtuple_type(name: str, fields: tuple):
    """The judge's own namedtuple class for (name, fields), built once (a namedtuple is data)."""
    key = (name, fields)
    if key not in _NAMEDTUPLES:
        if len(_NAMEDTUPLES) > 256:
            raise DecodeError("too many namedtuple types")
        import collections

        safe = name if name.isidentifier() else "namedtuple"
        _NAMEDTUPLES[key] = collections.namedtuple(safe, fields)  # raises ValueError on bad fields
    return _NAMEDTUPLES[key]


# --- frames -------------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return _U32.pack(len(payload)) + payload


def write_frame(fd: int, payload: bytes) -> None:
    """Write one frame, blocking (the judge, which must not block, writes with a deadline)."""
    data = memoryview(frame(payload))
    while data:
        data = data[os.write(fd, data) :]


def read_frame(fd: int, max_bytes: int) -> bytes | None:
    """Read one frame (blocking); ``None`` at end of file."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    n = _U32.unpack(head)[0]
    if n > max_bytes:
        raise DecodeError(f"a frame of {n} bytes (the cap is {max_bytes})")
    body = _read_exactly(fd, n)
    if body is None:
        raise DecodeError("end of file inside a frame")
    return body


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise DecodeError("end of file inside a frame")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
