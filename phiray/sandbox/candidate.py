"""The candidate side (stdlib only; runs inside the sandbox, unprivileged, in its own process).

It executes the untrusted code once, tells the judge which names it defined, then answers calls. It never
sees the tests, the token or the verdict channel: whatever it does here can only change the plain values
it sends back (see wire.py), never what the judge concludes from them.
"""

from __future__ import annotations

import builtins
import marshal
import sys
import types

import wire  # noqa: E402  (imported by path inside the sandbox, see launcher.py)


def describe(namespace: dict, handles: dict) -> dict:
    """Top-level names the tests may use: callables, stdlib modules, plain values, or handles."""
    names = {}
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            names[name] = {"mod": getattr(value, "__name__", name)}
        elif callable(value):
            names[name] = {"call": getattr(value, "__qualname__", name) if isinstance(value, type) else ""}
        else:
            try:
                names[name] = {"val": wire.encode(value, handles)}
            except Exception:  # noqa: BLE001 - an unsendable global is simply not offered to the tests
                continue
    return names


def serve(sock, code: str) -> None:
    """Run ``code``, report its names, then answer the judge's calls until it hangs up."""
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    handles: dict = {}
    try:
        exec(compile(code, "<candidate>", "exec"), namespace)  # noqa: S102 - the point of the sandbox
    except BaseException as err:  # noqa: BLE001 - reported to the judge as the failure
        wire.send(sock, {"load_error": [type(err).__name__, _message(err)]})
        return
    wire.send(sock, {"names": describe(namespace, handles)})

    def on_tag(tag, data):
        if tag == "h":
            return handles[data["h"]]
        if tag == "fnref":
            return namespace[data["fnref"]]
        if tag == "bt":
            return getattr(builtins, data["bt"])
        function = types.FunctionType(marshal.loads(bytes.fromhex(data["fn"])), namespace)
        return function

    while True:
        request = wire.recv(sock)
        if request is None:
            return
        wire.send(sock, _answer(request, namespace, handles, on_tag))


def _answer(request: dict, namespace: dict, handles: dict, on_tag) -> dict:
    try:
        target = request["target"]
        obj = handles[target["h"]] if isinstance(target, dict) else namespace[target]
        op = request["op"]
        if op == "getattr":
            return {"ok": wire.encode(getattr(obj, request["name"]), handles)}
        if op == "setattr":
            setattr(obj, request["name"], wire.decode(request["value"], on_tag))
            return {"ok": None}
        args = [wire.decode(a, on_tag) for a in request["args"]]
        kwargs = {k: wire.decode(v, on_tag) for k, v in request["kw"].items()}
        result = obj(*args, **kwargs)
        # Mutable arguments travel back so that in-place algorithms (list.sort style) can be tested.
        mutated = [wire.encode(a, handles) if isinstance(a, (list, dict, set, bytearray)) else None for a in args]
        return {"ok": wire.encode(result, handles), "mut": mutated}
    except BaseException as err:  # noqa: BLE001 - every exception, SystemExit included, goes to the judge
        if isinstance(err, (KeyboardInterrupt,)):
            raise
        return {"err": [type(err).__name__, _message(err)]}


def _message(err: BaseException) -> str:
    try:
        return str(err)[:2000]
    except Exception:  # noqa: BLE001 - a hostile __str__
        return "<unprintable>"


def main(sock, code: str) -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
    serve(sock, code)
