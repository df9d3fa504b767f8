"""Plain data between the grader and a student's code in another process: no pickle, ever.

The verdict (``tools/verdict.py``) runs the instructor's tests in the grader's process and the
student's definitions in a sandboxed child (``tools/verdict_child.py``). They talk through a
pipe with length-prefixed JSON messages. Values cross *by value* when they are plain data:

* ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, ``complex`` (exact types only: an
  ``int`` subclass whose ``==`` always says yes does not cross as an ``int``);
* ``list``, ``tuple``, ``dict``, ``set``, ``frozenset``, ``slice``, ``range``;
* NumPy scalars and arrays (raw bytes, dtype and shape; never object arrays), torch tensors (the
  bytes of their whole storage with size, stride and offset, so views of one buffer stay views
  of one buffer on the other side), ``torch.dtype``, ``torch.device``, ``torch.Size``;
* pandas ``DataFrame`` and ``Series`` (columns as arrays or lists);
* dataclasses of ``course_lib`` (model and hardware specs) and the course's ``MiniGPT`` (its
  spec, seed and weights);
* functions and classes of a few trusted modules by name (``math.ceil``, ``torch.float32``).

Anything else crosses *by reference*: the receiver gets a proxy (``tools.verdict.Remote``), and
using it (calling it, reading an attribute, ``len``, indexing, iterating, ``isinstance``) sends
a request to the side that owns the object. The receiver of a message only ever builds the
types listed above; it never runs code chosen by the sender.

Why one module of this size: both sides of the verdict run this one file (the student's side
receives it as source, with nothing else of the course), so encoder and decoder of every
type must live together.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import os
import select
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

#: Largest message either side accepts (a bigger one is a protocol error, not a memory bomb).
MAX_MESSAGE_BYTES = 256 * 2**20
#: Storages up to this size cross whole (views stay views); a small view of a larger storage
#: crosses as a compact copy instead.
WHOLE_STORAGE_BYTES = 64 * 2**20
#: Modules whose functions, classes and constants may cross by name.
TRUSTED_MODULES = ("builtins", "math", "numpy", "torch", "pandas", "course_lib")
#: Exceptions re-raised as themselves on the other side; others arrive as :class:`RemoteError`.
BUILTIN_ERRORS: dict[str, type[BaseException]] = {cls.__name__: cls for cls in (
    ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, ArithmeticError, OverflowError,
    RuntimeError, NotImplementedError, AttributeError, AssertionError, LookupError, StopIteration,
    NameError, UnboundLocalError, RecursionError, MemoryError, FloatingPointError, ImportError,
    ModuleNotFoundError, OSError, UnicodeError, Exception)}
_PLAIN = (type(None), bool, int, float, str)


class WireError(RuntimeError):
    """A message that does not follow the protocol (too large, malformed, unknown tag)."""


class RemoteError(Exception):
    """An exception raised on the other side whose class does not cross (e.g. a student's own)."""


class PeerLost(BaseException):  # noqa: N818 - it is not an error of the code that sees it
    """The other side died, closed the pipe or did not answer in time.

    A ``BaseException`` on purpose: test code that catches ``Exception`` cannot turn a lost
    child into a pass.
    """


# --------------------------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------------------------

def write_message(fd: int, message: Any) -> None:
    """Send one JSON message, prefixed with its length (4 bytes, big-endian)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data):,} bytes is over the {MAX_MESSAGE_BYTES:,}-byte limit")
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            raise PeerLost(f"the other side closed the pipe ({exc})") from None
        view = view[written:]


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise PeerLost("no answer in time")
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise PeerLost("the other side ended (its process died or exited)")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int, deadline: float | None = None) -> Any:
    """Receive one message; :class:`PeerLost` at end of file or past ``deadline`` (monotonic)."""
    (size,) = struct.unpack(">I", _read_exactly(fd, 4, deadline))
    if size > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {size:,} bytes announced, over the limit")
    try:
        return json.loads(_read_exactly(fd, size, deadline))
    except json.JSONDecodeError as exc:
        raise WireError(f"malformed message: {exc}") from None


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise WireError("bytes must arrive as base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _trusted(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in TRUSTED_MODULES)


def _named_global(value: Any) -> dict | None:
    """``{"$": "global"}`` for a function/class/constant reachable by name in a trusted module."""
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not (isinstance(module, str) and isinstance(name, str)) or "<" in name or not _trusted(module):
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return {"$": "global", "module": module, "name": name} if found is value else None


def _storage_bytes(storage: Any) -> bytes:
    import torch

    return torch.tensor([], dtype=torch.uint8).set_(storage, 0, (storage.nbytes(),), (1,)).numpy().tobytes()


class Codec:
    """Encodes and decodes values for one side of a connection.

    ``objects`` holds this side's objects sent by reference (id -> object); ``remote`` builds a
    proxy for one of the other side's. ``storages`` keeps, per storage id of the other side, the
    local storage its tensors were decoded into, so that views of one buffer stay views of one
    buffer (and a buffer allocated once keeps one address).
    """

    def __init__(self, side: str, remote: Callable[[int, str, bool], Any]) -> None:
        self.side = side
        self.remote = remote
        self.objects: dict[int, Any] = {}
        self._ids: dict[int, int] = {}  # id(obj) -> ref id
        self.storages: dict[int, Any] = {}
        # data_ptr -> (storage id sent, the storage): kept alive, so that no later tensor can get
        # its address and be taken for a view of it
        self._storages_sent: dict[int, tuple[int, Any]] = {}
        self._models_sent: dict[int, tuple[int, Any]] = {}  # id(model) -> (key, model kept alive)
        self.models_received: dict[int, Any] = {}  # key -> the model decoded from the other side

    # encoding -------------------------------------------------------------------------------
    def ref(self, value: Any) -> dict:
        """Send ``value`` by reference (kept alive here until the connection ends)."""
        key = id(value)
        if key not in self._ids:
            ref_id = len(self.objects) + 1
            self.objects[ref_id] = value
            self._ids[key] = ref_id
        return {"$": "ref", "side": self.side, "id": self._ids[key],
                "type": type(value).__qualname__, "callable": callable(value)}

    def encode(self, value: Any) -> Any:  # noqa: C901, PLR0911, PLR0912 - one branch per type
        kind = type(value)
        if kind in _PLAIN:
            if kind is float and value != value:  # NaN: JSON has none
                return {"$": "float", "v": "nan"}
            if kind is float and value in (float("inf"), float("-inf")):
                return {"$": "float", "v": "inf" if value > 0 else "-inf"}
            return value
        if kind is Remote:  # a proxy of the other side's object goes home as itself
            return {"$": "ref", "side": "peer", "id": object.__getattribute__(value, "_wire_id")}
        if kind is list:
            return {"$": "list", "v": [self.encode(v) for v in value]}
        if kind is tuple:
            return {"$": "tuple", "v": [self.encode(v) for v in value]}
        if kind is dict:
            return {"$": "dict", "v": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if kind in (set, frozenset):
            return {"$": kind.__name__, "v": [self.encode(v) for v in value]}
        if kind is bytes:
            return {"$": "bytes", "v": _b64(value)}
        if kind is complex:
            return {"$": "complex", "v": [self.encode(value.real), self.encode(value.imag)]}
        if kind is slice:
            return {"$": "slice", "v": [self.encode(value.start), self.encode(value.stop), self.encode(value.step)]}
        if kind is range:
            return {"$": "range", "v": [value.start, value.stop, value.step]}
        if value is Ellipsis:
            return {"$": "ellipsis"}
        if isinstance(value, np.generic) and kind.__module__ == "numpy" and value.dtype.kind in "biufc":
            return {"$": "npscalar", "dtype": value.dtype.str, "v": _b64(value.tobytes())}
        if kind is np.ndarray and value.dtype.kind in "biufc" and not value.dtype.fields:
            return {"$": "ndarray", "dtype": value.dtype.str, "shape": list(value.shape),
                    "v": _b64(np.ascontiguousarray(value).tobytes())}
        torch = sys.modules.get("torch")
        if torch is not None and issubclass(kind, torch.Tensor):  # subclasses cross as plain tensors
            return self._encode_tensor(value)
        encoded = self._encode_library_value(value)
        if encoded is not None:
            return encoded
        named = _named_global(value)
        if named is not None:
            return named
        return self.ref(value)

    def _encode_library_value(self, value: Any) -> dict | None:  # noqa: PLR0911
        module = type(value).__module__ or ""
        if module.startswith("torch"):
            import torch

            if type(value) is torch.dtype:
                return {"$": "torch.dtype", "v": str(value).removeprefix("torch.")}
            if type(value) is torch.device:
                return {"$": "torch.device", "v": str(value)}
            if type(value) is torch.Size:
                return {"$": "torch.Size", "v": list(value)}
        if module.startswith("pandas"):
            import pandas as pd

            if type(value) is pd.DataFrame:
                return {"$": "DataFrame", "index": self._encode_column(value.index),
                        "index_name": self.encode(value.index.name),
                        "columns": self.encode(list(value.columns)),
                        "data": [self._encode_column(value.iloc[:, i]) for i in range(value.shape[1])]}
            if type(value) is pd.Series:
                return {"$": "Series", "index": self._encode_column(value.index), "name": self.encode(value.name),
                        "data": self._encode_column(value)}
        if module.startswith("course_lib"):
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return {"$": "dataclass", "module": module, "name": type(value).__qualname__,
                        "fields": {f.name: self.encode(getattr(value, f.name))
                                   for f in dataclasses.fields(value) if f.init}}
            if type(value).__name__ == "MiniGPT" and module == "course_lib.minigpt":
                return self._encode_model(value)
        return None

    def _encode_model(self, model: Any) -> dict:
        """The course's MiniGPT by value, once: later it is the other side's copy, as it is now
        (a model lives on, with its state, like any object passed to the same function twice)."""
        sent = self._models_sent.get(id(model))
        if sent is not None:
            return {"$": "model", "key": sent[0]}
        key = len(self._models_sent) + 1
        self._models_sent[id(model)] = (key, model)
        return {"$": "MiniGPT", "key": key, "spec": self.encode(model.spec), "seed": self.encode(model.seed),
                "state": self.encode(dict(model.state_dict()))}

    def _encode_column(self, column: Any) -> dict:
        values = column.to_numpy()
        if values.dtype.kind in "biufc":
            return {"$": "column", "v": self.encode(values)}
        return {"$": "column", "v": self.encode([v.item() if isinstance(v, np.generic) else v for v in values])}

    def _encode_tensor(self, value: Any) -> dict:
        import torch

        t = value.detach()
        if type(t) is not torch.Tensor:  # a subclass crosses as its plain data, overrides left behind
            t = t.as_subclass(torch.Tensor)
        if t.device.type != "cpu":
            t = t.cpu()
        if t.is_sparse or t.untyped_storage().nbytes() > WHOLE_STORAGE_BYTES:
            t = t.to_dense().contiguous().clone() if t.is_sparse else t.contiguous().clone()
        storage = t.untyped_storage()
        sid = self._storages_sent.setdefault(storage.data_ptr(), (len(self._storages_sent) + 1, storage))[0]
        return {"$": "tensor", "dtype": str(t.dtype).removeprefix("torch."), "size": list(t.shape),
                "stride": list(t.stride()), "offset": t.storage_offset(), "storage": sid,
                "nbytes": storage.nbytes(), "v": _b64(_storage_bytes(storage))}

    # decoding -------------------------------------------------------------------------------
    def decode(self, data: Any) -> Any:  # noqa: C901, PLR0911, PLR0912 - one branch per tag
        if data is None or type(data) in (bool, int, float, str):
            return data
        if type(data) is not dict or "$" not in data:
            raise WireError(f"untagged value {type(data).__name__}")
        tag = data["$"]
        if tag == "float":
            return float(data["v"])
        if tag in ("list", "tuple", "set", "frozenset"):
            items = [self.decode(v) for v in data["v"]]
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict":
            return {self.decode(k): self.decode(v) for k, v in data["v"]}
        if tag == "bytes":
            return _unb64(data["v"])
        if tag == "complex":
            return complex(*(float(self.decode(v)) for v in data["v"]))
        if tag == "slice":
            return slice(*(self.decode(v) for v in data["v"]))
        if tag == "range":
            return range(*(int(v) for v in data["v"]))
        if tag == "ellipsis":
            return Ellipsis
        if tag == "npscalar":
            return np.frombuffer(_unb64(data["v"]), dtype=self._numeric_dtype(data["dtype"]))[0]
        if tag == "ndarray":
            dtype = self._numeric_dtype(data["dtype"])
            shape = [int(n) for n in data["shape"]]
            return np.frombuffer(_unb64(data["v"]), dtype=dtype).reshape(shape).copy()
        if tag == "tensor":
            return self._decode_tensor(data)
        if tag in ("torch.dtype", "torch.device", "torch.Size"):
            return self._decode_torch_value(tag, data["v"])
        if tag in ("DataFrame", "Series"):
            return self._decode_frame(data)
        if tag == "column":
            return self.decode(data["v"])
        if tag == "dataclass":
            cls = self._global(data["module"], data["name"])
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                raise WireError(f"{data['module']}.{data['name']} is not a course dataclass")
            return cls(**{str(k): self.decode(v) for k, v in data["fields"].items()})
        if tag == "MiniGPT":
            from course_lib.minigpt import MiniGPT

            model = MiniGPT(self.decode(data["spec"]), seed=self.decode(data["seed"]))
            model.load_state_dict(self.decode(data["state"]))
            self.models_received[int(data["key"])] = model
            return model
        if tag == "model":
            try:
                return self.models_received[int(data["key"])]
            except KeyError:
                raise WireError(f"unknown model {data['key']}") from None
        if tag == "global":
            return self._global(data["module"], data["name"])
        if tag == "ref":
            if data["side"] == "peer":  # one of ours coming back
                try:
                    return self.objects[int(data["id"])]
                except KeyError:
                    raise WireError(f"unknown reference {data['id']}") from None
            return self.remote(int(data["id"]), str(data.get("type", "object")), bool(data.get("callable")))
        raise WireError(f"unknown tag {tag!r}")

    @staticmethod
    def _numeric_dtype(text: Any) -> np.dtype:
        dtype = np.dtype(str(text))
        if dtype.kind not in "biufc" or dtype.fields:
            raise WireError(f"dtype {text!r} is not a plain numeric type")
        return dtype

    @staticmethod
    def _decode_torch_value(tag: str, value: Any) -> Any:
        import torch

        if tag == "torch.dtype":
            dtype = getattr(torch, str(value), None)
            if type(dtype) is not torch.dtype:
                raise WireError(f"unknown torch dtype {value!r}")
            return dtype
        if tag == "torch.device":
            return torch.device(str(value))
        return torch.Size([int(n) for n in value])

    @staticmethod
    def _global(module: Any, name: Any) -> Any:
        if not (isinstance(module, str) and isinstance(name, str) and _trusted(module)):
            raise WireError(f"{module}.{name} is not in a trusted module")
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            if part.startswith("_"):
                raise WireError(f"private name {name!r}")
            found = getattr(found, part)
        return found

    def _decode_tensor(self, data: dict) -> Any:
        import torch

        dtype = self._decode_torch_value("torch.dtype", data["dtype"])
        raw = _unb64(data["v"])
        if len(raw) != int(data["nbytes"]):
            raise WireError("tensor storage size does not match its bytes")
        sid = int(data["storage"])
        storage = self.storages.get(sid)
        if storage is None or storage.nbytes() != len(raw):
            fresh = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            storage = fresh.untyped_storage()
            self.storages[sid] = storage
        elif raw:  # the same buffer again: refresh its contents in place (earlier views see them)
            torch.tensor([], dtype=torch.uint8).set_(storage, 0, (len(raw),), (1,)).copy_(
                torch.frombuffer(bytearray(raw), dtype=torch.uint8))
        size = [int(n) for n in data["size"]]
        stride = [int(n) for n in data["stride"]]
        offset = int(data["offset"])
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if len(size) != len(stride) or offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
            raise WireError("tensor view with a negative size, stride or offset")
        if all(size):
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if (last + 1) * itemsize > len(raw):
                raise WireError("tensor view outside its storage")
        return torch.empty(0, dtype=dtype).set_(storage, offset, size, stride)

    def _decode_frame(self, data: dict) -> Any:
        import pandas as pd

        index = pd.Index(self.decode(data["index"]), name=self.decode(data.get("index_name")))
        if data["$"] == "Series":
            return pd.Series(self.decode(data["data"]), index=index, name=self.decode(data["name"]))
        columns = self.decode(data["columns"])
        cols = [self.decode(c) for c in data["data"]]
        if len(columns) != len(cols):
            raise WireError("DataFrame columns and data differ in length")
        frame = pd.DataFrame({i: pd.Series(c, index=index) for i, c in enumerate(cols)}, index=index)
        frame.columns = pd.Index(columns)
        return frame

    # errors ---------------------------------------------------------------------------------
    @staticmethod
    def encode_error(exc: BaseException) -> dict:
        """The exception as plain data: its class's name, the nearest built-in class it derives
        from (a student's ``class NegativeSize(ValueError)`` arrives as a ``ValueError``) and its
        message."""
        kind = type(exc)
        name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        base = next((c.__name__ for c in kind.__mro__ if BUILTIN_ERRORS.get(c.__name__) is c), "Exception")
        try:
            text = str(exc)
        except Exception:  # noqa: BLE001 - a student's __str__ may raise
            text = "<message could not be read>"
        return {"type": name[:200], "base": base, "msg": text[:2000]}

    @staticmethod
    def decode_error(data: dict) -> BaseException:
        name, msg = str(data.get("type", "Exception")), str(data.get("msg", ""))
        cls = BUILTIN_ERRORS.get(str(data.get("base", name)))
        if cls is None or cls is Exception:
            return RemoteError(f"{name}: {msg}")
        return cls(msg if name == cls.__name__ else f"{name}: {msg}")


# --------------------------------------------------------------------------------------------
# the connection and its proxies
# --------------------------------------------------------------------------------------------

#: What the grader's side answers about its own objects: calling a callable it handed over, and
#: reading a container. Never attributes: an attribute chain could reach the grader's tests.
GRADER_OPS = frozenset({"call", "len", "iter", "getitem", "contains", "bool", "repr"})
#: What the student's side answers (its own objects: anything).
ALL_OPS = GRADER_OPS | {"name", "getattr", "setattr", "setitem", "delitem", "isinstance", "enter", "exit", "str"}


class Connection:
    """One side of a request/answer conversation over two pipe file descriptors.

    Either side may ask while it waits for an answer (a student's function calling back a
    function the grader passed it), so :meth:`request` serves the other side's requests until
    its own answer arrives. ``deadline`` (``time.monotonic()`` value or None) bounds every wait.
    """

    def __init__(self, fd_in: int, fd_out: int, side: str, ops: frozenset[str],
                 names: Callable[[str], Any] | None = None) -> None:
        self.fd_in, self.fd_out = fd_in, fd_out
        self.ops = ops
        self.names = names
        self.codec = Codec(side, self._proxy)
        self.deadline: float | None = None
        self.closed = False

    def _proxy(self, ref_id: int, type_name: str, is_callable: bool) -> Remote:
        return Remote(self, ref_id, type_name, is_callable)

    def request(self, op: str, *args: Any) -> Any:
        """Ask the other side to do ``op`` on ``args``; its answer, or its exception raised here."""
        if self.closed:
            raise PeerLost("the connection to the other side is closed")
        try:
            write_message(self.fd_out, {"op": op, "args": self.codec.encode(list(args))})
            while True:
                message = read_message(self.fd_in, self.deadline)
                if type(message) is not dict:
                    raise WireError("a message must be an object")
                if "reply" in message:
                    return self.codec.decode(message["reply"])
                if "error" in message:
                    raise self.codec.decode_error(message["error"])
                self.serve(message)
        except PeerLost:
            self.closed = True
            raise

    def serve(self, message: dict) -> None:
        """Answer one request of the other side."""
        try:
            op = message.get("op")
            if op not in self.ops:
                raise PermissionError(f"operation {op!r} is not answered here")
            result = self._perform(op, self.codec.decode(message.get("args")))
            reply = {"reply": self.codec.encode(result)}
        except PeerLost:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit or a KeyboardInterrupt in student code too
            reply = {"error": Codec.encode_error(exc)}
        write_message(self.fd_out, reply)

    def serve_forever(self) -> None:
        """Answer requests until the other side closes the pipe."""
        while True:
            try:
                message = read_message(self.fd_in)
            except PeerLost:
                return
            self.serve(message)

    def _perform(self, op: str, args: Any) -> Any:  # noqa: C901, PLR0911 - one line per operation
        if type(args) is not list or not args:
            raise WireError("a request needs arguments")
        target = args[0]
        if op == "name":
            if self.names is None or type(target) is not str:
                raise NameError("no names are served here")
            return self.names(target)
        if op == "call":
            call_args, call_kwargs = args[1], args[2]
            return target(*call_args, **{str(k): v for k, v in call_kwargs.items()})
        if op == "getattr":
            return getattr(target, str(args[1]))
        if op == "setattr":
            return setattr(target, str(args[1]), args[2])
        if op == "getitem":
            return target[args[1]]
        if op == "setitem":
            target[args[1]] = args[2]
            return None
        if op == "delitem":
            del target[args[1]]
            return None
        if op == "len":
            return len(target)
        if op == "iter":
            return list(target)
        if op == "contains":
            return args[1] in target
        if op == "bool":
            return bool(target)
        if op in ("repr", "str"):
            return (repr(target) if op == "repr" else str(target))[:10_000]
        if op == "isinstance":
            return isinstance(target, args[1])
        if op == "enter":
            return target.__enter__()
        if op == "exit":
            return target.__exit__(None, None, None)
        raise WireError(f"unknown operation {op!r}")


class Remote:
    """A proxy for an object that lives on the other side of a :class:`Connection`.

    Using it sends a request: calling, attributes, ``len``, indexing, iteration, ``in``,
    ``bool``, ``repr``, ``with`` and ``isinstance(x, proxy_of_a_class)``. Identity (``is``,
    ``==``, ``hash``) is the proxy's own: an object on the other side cannot claim to equal
    anything here.
    """

    __slots__ = ("_wire_conn", "_wire_id", "_wire_type", "_wire_callable", "_wire_name")

    def __init__(self, conn: Connection, ref_id: int, type_name: str, is_callable: bool) -> None:
        object.__setattr__(self, "_wire_conn", conn)
        object.__setattr__(self, "_wire_id", ref_id)
        object.__setattr__(self, "_wire_type", type_name)
        object.__setattr__(self, "_wire_callable", is_callable)
        object.__setattr__(self, "_wire_name", None)  # the name the grader bound it to, if any

    def bind_name(self, name: str) -> None:
        """Give the proxy the name the grader's namespace knows it by (``__name__`` in messages)."""
        object.__setattr__(self, "_wire_name", name)

    def _ask(self, op: str, *args: Any) -> Any:
        return object.__getattribute__(self, "_wire_conn").request(op, self, *args)

    def __getattr__(self, name: str) -> Any:
        if name == "__name__" and object.__getattribute__(self, "_wire_name") is not None:
            return object.__getattribute__(self, "_wire_name")
        if name.startswith("__") or name.startswith(("_repr_", "_ipython_")):
            raise AttributeError(name)
        return self._ask("getattr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._ask("setattr", name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask("call", args, kwargs)

    def __len__(self) -> int:
        return self._ask("len")

    def __getitem__(self, key: Any) -> Any:
        return self._ask("getitem", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ask("setitem", key, value)

    def __delitem__(self, key: Any) -> None:
        self._ask("delitem", key)

    def __iter__(self) -> Any:
        items = self._ask("iter")
        return iter(items if type(items) is list else [])

    def __contains__(self, item: Any) -> bool:
        return self._ask("contains", item) is True

    def __bool__(self) -> bool:
        return self._ask("bool") is True

    def __repr__(self) -> str:
        text = self._ask("repr")
        return text if type(text) is str else f"<{object.__getattribute__(self, '_wire_type')} object>"

    def __enter__(self) -> Any:
        return self._ask("enter")

    def __exit__(self, *exc: Any) -> None:
        self._ask("exit")

    def __instancecheck__(self, obj: Any) -> bool:
        return self._ask_about(obj) is True

    def _ask_about(self, obj: Any) -> Any:
        return object.__getattribute__(self, "_wire_conn").request("isinstance", obj, self)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other
