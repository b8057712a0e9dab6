"""The judge side (stdlib only; runs inside the sandbox, in a process the candidate cannot reach).

The tests run here, against proxies: calling ``candidate(x)`` sends ``x`` as plain data to the candidate
process and rebuilds its answer from plain data (wire.py). So the tests compare genuine builtin objects,
and nothing the candidate does — patching builtins, walking frames, exiting early, objects equal to
anything, signal games — happens in this process. The judge returns a status and a detail; the launcher
writes the per-execution token only for "passed".
"""

from __future__ import annotations

import builtins
import importlib
import keyword
import linecache
import marshal
import sys
import types

import wire  # noqa: E402  (loaded by file path in the zygote, see launcher.py)


class CandidateGone(Exception):
    """The candidate process closed the connection (exited, crashed, was killed)."""


class CandidateError(Exception):
    """A non-builtin exception raised by the candidate, re-raised here by name."""


class Remote:
    """Talks to the candidate process; one request at a time."""

    def __init__(self, sock) -> None:
        self.sock = sock

    def request(self, message: dict):
        try:
            wire.send(self.sock, message)
            reply = wire.recv(self.sock)
        except OSError as err:
            raise CandidateGone(str(err)) from None
        if reply is None:
            raise CandidateGone("the candidate process ended")
        if not isinstance(reply, dict):
            raise wire.WireError("malformed reply")
        if "err" in reply:
            raise _rebuild_exception(reply["err"])
        return reply

    def value(self, data):
        return wire.decode(data, self._on_tag)

    def _on_tag(self, tag, data):
        if tag == "h" and type(data.get("h")) is int:
            return RemoteObject(self, data["h"], str(data.get("cls", "object"))[:100])
        raise wire.WireError(f"unexpected tag {tag!r} from the candidate")

    def encode(self, value):
        return wire.encode(value, None, _encode_extra)

    def call(self, target, args, kwargs):
        reply = self.request(
            {
                "op": "call",
                "target": target,
                "args": [self.encode(a) for a in args],
                "kw": {str(k): self.encode(v) for k, v in kwargs.items()},
            }
        )
        for original, after in zip(args, reply.get("mut") or []):
            if after is not None:
                _write_back(original, self.value(after))
        return self.value(reply.get("ok"))


def _encode_extra(value):
    if isinstance(value, RemoteObject):
        return {"h": object.__getattribute__(value, "_handle")}
    if isinstance(value, RemoteFunction):
        return {"fnref": value.__name__}
    if (
        isinstance(value, (type, types.BuiltinFunctionType))
        and getattr(builtins, getattr(value, "__name__", ""), None) is value
    ):
        return {"bt": value.__name__}  # int, str, len... as arguments (e.g. "remove values of type int")
    if isinstance(value, types.FunctionType) and not value.__code__.co_freevars:
        return {"fn": marshal.dumps(value.__code__).hex()}
    return None


def _write_back(original, after) -> None:
    if isinstance(original, list) and type(after) is list:
        original[:] = after
    elif isinstance(original, dict) and type(after) is dict:
        original.clear()
        original.update(after)
    elif isinstance(original, set) and type(after) is set:
        original.clear()
        original.update(after)
    elif isinstance(original, bytearray) and type(after) is bytearray:
        original[:] = after


def _rebuild_exception(err) -> BaseException:
    name, message = (str(err[0])[:100], str(err[1])[:2000]) if isinstance(err, list) and len(err) == 2 else ("?", "")
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
            pass
    return CandidateError(f"{name}: {message}")


class RemoteFunction:
    """A top-level callable of the candidate (its function, or a class it defined)."""

    def __init__(self, remote: Remote, name: str) -> None:
        self._remote, self.__name__ = remote, name

    def __call__(self, *args, **kwargs):
        return self._remote.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.__name__}>"


class RemoteObject:
    """An instance living in the candidate. Identity only: no ==, no truth-value tricks cross over."""

    __slots__ = ("_remote", "_handle", "_cls")

    def __init__(self, remote: Remote, handle: int, cls: str) -> None:
        object.__setattr__(self, "_remote", remote)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_cls", cls)

    def __getattr__(self, name: str):
        remote = object.__getattribute__(self, "_remote")
        reply = remote.request(
            {"op": "getattr", "target": {"h": object.__getattribute__(self, "_handle")}, "name": name}
        )
        return remote.value(reply.get("ok"))

    def __setattr__(self, name: str, value) -> None:
        remote = object.__getattribute__(self, "_remote")
        remote.request(
            {
                "op": "setattr",
                "target": {"h": object.__getattribute__(self, "_handle")},
                "name": name,
                "value": remote.encode(value),
            }
        )

    def __call__(self, *args, **kwargs):
        remote = object.__getattribute__(self, "_remote")
        return remote.call({"h": object.__getattribute__(self, "_handle")}, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate {object.__getattribute__(self, '_cls')} object>"


MAX_NAMES = 10_000
# Modules a candidate's `import x` may lend to the tests (MBPP's tests use `math.isclose` and the like
# without importing math themselves): stdlib, imported here from read-only locations, never by another name.
NO_LEND = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "webbrowser",
    "pydoc",
    "ensurepip",
    "venv",
    "test",
    "lib2to3",
    "__hello__",
    "__phello__",
}


def check_greeting(hello) -> dict | None:
    """The candidate's first message, validated strictly: {"names": {identifier: {one of "call": str,
    "mod": str, "val": value}}} or {"load_error": [str, str]}. None when it is anything else."""
    if not isinstance(hello, dict) or len(hello) != 1:
        return None
    if "load_error" in hello:
        err = hello["load_error"]
        ok = isinstance(err, list) and len(err) == 2 and all(type(x) is str for x in err)
        return hello if ok else None
    names = hello.get("names")
    if type(names) is not dict or len(names) > MAX_NAMES:
        return None
    for name, desc in names.items():
        if not (
            type(name) is str
            and name.isidentifier()
            and not name.startswith("__")
            and not keyword.iskeyword(name)
            and type(desc) is dict
            and len(desc) == 1
        ):
            return None
        kind, value = next(iter(desc.items()))
        if kind not in ("call", "mod", "val") or (kind != "val" and (type(value) is not str or len(value) > 200)):
            return None
    return hello


def names_used_by(code: types.CodeType) -> set[str]:
    """Every name the tests' code (nested functions and classes included) may look up."""
    found = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= names_used_by(const)
    return found


def namespace_for_tests(remote: Remote, names: dict, wanted: set[str], entry_point: str | None) -> dict:
    """The tests' globals: the real builtins, and only those of the candidate's names that the tests look up
    and that no builtin already answers (`def abs(v): return 0` never reaches the tests' own abs), plus the
    entry point. Proxies for callables, stdlib modules imported here under their own name, plain values."""
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    for name, desc in names.items():
        if name != entry_point and (name not in wanted or hasattr(builtins, name)):
            continue
        kind, value = next(iter(desc.items()))
        if kind == "call":
            namespace[name] = RemoteFunction(remote, name)
        elif kind == "mod":
            if value == name and name in sys.stdlib_module_names and name not in NO_LEND and name[0] != "_":
                try:
                    namespace[name] = importlib.import_module(name)
                except ImportError:
                    pass
        else:
            try:
                namespace[name] = remote.value(value)
            except (wire.WireError, ValueError, TypeError, RecursionError):
                pass
    return namespace


def run_tests(sock, tests: str, entry_point: str | None) -> tuple[str, str]:
    """(status, detail) for the candidate behind ``sock``; status "passed" only when every test ran."""
    remote = Remote(sock)
    try:
        compiled = compile(tests, "<tests>", "exec")
    except SyntaxError as err:
        return "error", f"the tests do not compile: {err}"
    try:
        hello = check_greeting(wire.recv(sock))
    except (OSError, ValueError, wire.WireError, RecursionError) as err:
        return "crashed", f"candidate sent a malformed greeting: {type(err).__name__}"
    if hello is None:
        return "crashed", "candidate process ended before defining anything, or sent a malformed greeting"
    if "load_error" in hello:
        err = _rebuild_exception(hello["load_error"])
        return _classify(err, where="candidate code")
    namespace = namespace_for_tests(remote, hello["names"], names_used_by(compiled), entry_point)
    linecache.cache["<tests>"] = (len(tests), None, tests.splitlines(True), "<tests>")
    try:
        exec(compiled, namespace)  # noqa: S102 - the tests are the judge's own
        if entry_point:
            if entry_point not in namespace:
                return "failed", f"NameError: the code does not define {entry_point!r}"
            check = namespace.get("check")
            if callable(check) and not isinstance(check, RemoteFunction):  # HumanEval style: check(candidate)
                check(namespace[entry_point])
    except BaseException as err:  # noqa: BLE001 - any failure of the tests is a verdict, never a pass
        return _classify(err, where=_test_line(err, tests))
    return "passed", ""


def _classify(err: BaseException, where: str) -> tuple[str, str]:
    if isinstance(err, CandidateGone):
        return "crashed", f"candidate process ended during the tests ({where})"
    if isinstance(err, MemoryError):
        return "memory", f"MemoryError ({where})"
    message = str(err)[:500]
    return "failed", f"{type(err).__name__}{': ' + message if message else ''} ({where})"


def _test_line(err: BaseException, tests: str) -> str:
    tb, lineno = err.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<tests>":
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if lineno is None:
        return "tests"
    lines = tests.splitlines()
    text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    return f"tests line {lineno}: {text[:200]}"
