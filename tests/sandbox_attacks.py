"""The sandbox attack matrix: one function per attack class, each proving both directions (the attack is
blocked, the honest solution passes). Plain functions of a namespaces-mode Sandbox, so the same matrix runs
in the test process (root, or whoever runs pytest) and, through ``python sandbox_attacks.py``, as an
ordinary user (tests/test_sandbox_attacks.py). Prints {attack: "ok" | "FAIL: ..."} as JSON when run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

SANDBOX_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "phiray", "sandbox")
MEMORY_MB = 256


def blocked(v) -> None:
    assert not v.passed, f"attack scored a pass: {v}"


def honest(sb, code: str, tests: str, entry_point: str | None = None) -> None:
    v = sb.check(code, tests, entry_point)
    assert v.passed, f"honest solution did not pass: {v}"


def processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def wait_gone(pids_or_marker, seconds: float = 4.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        alive = (
            processes_with(pids_or_marker)
            if isinstance(pids_or_marker, str)
            else [p for p in pids_or_marker if os.path.exists(f"/proc/{p}")]
        )
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def planted_module_on_sys_path(sb) -> None:
    """The candidate writes graphlib.py (a stdlib module nothing preloads) and a private module wherever it
    can, the host sandbox directory recreated included; the tests then import both in the judge."""
    dirs = ["", ".", "/work", "/tmp", SANDBOX_DIR, os.path.dirname(SANDBOX_DIR), *sys.path]
    code = (
        f"import os\nfor d in {dirs!r}:\n    try:\n        os.makedirs(d or '.', exist_ok=True)\n"
        f"        for n in ('graphlib', 'planted_by_candidate'):\n"
        f"            open(os.path.join(d or '.', n + '.py'), 'w').write('PLANTED = True')\n"
        f"    except OSError:\n        pass\n"
    )
    tests = "import graphlib\nassert getattr(graphlib, 'PLANTED', False)\n"
    blocked(sb.check(code, tests))
    blocked(sb.check(code, "import planted_by_candidate\n"))
    honest(sb, "x = 1\n", "import graphlib\nassert graphlib.TopologicalSorter and x == 1\n")


def shadowed_builtins(sb) -> None:
    code = (
        "def abs(v):\n    return 0\ndef len(v):\n    return 3\nisinstance = lambda *a: True\n"
        "def f(x):\n    return [x]\n"
    )
    blocked(sb.check(code, "assert abs(f(-1.5)[0] - 1.0) < 1e-9"))
    blocked(sb.check(code, "assert len(f(1)) == 3"))
    blocked(sb.check(code, "assert isinstance(f(1), str)"))
    # HumanEval style: the tests reference only `candidate`; a candidate `check` must not replace theirs
    blocked(
        sb.check(
            "def check(c):\n    pass\ndef f(x):\n    return 0\n",
            "def check(candidate):\n    assert candidate(2) == 4\n",
            "f",
        )
    )
    honest(sb, "def f(x):\n    return [abs(x)]\n", "assert abs(f(-2)[0]) == 2 and len(f(1)) == 1")


GREETING_ATTACK = """import json, os, socket, struct
def _sock():
    for fd in range(3, 64):
        try:
            s = socket.socket(fileno=os.dup(fd))
            if s.family == socket.AF_UNIX:
                return s
        except OSError:
            pass
def _send(s, obj):
    data = json.dumps(obj).encode()
    s.sendall(struct.pack('>I', len(data)) + data)
s = _sock()
_send(s, GREETING)
while True:
    head = s.recv(4)
    if len(head) < 4:
        os._exit(0)
    s.recv(struct.unpack('>I', head)[0], socket.MSG_WAITALL)
    _send(s, {'ok': 3})
"""


def malicious_greeting(sb) -> None:
    """A candidate that speaks the wire protocol itself: fake builtins, dunder names, malformed shapes."""
    greetings = [
        {"names": {"__builtins__": {"val": {"d": [["len", {"h": 1, "cls": "f"}]]}}, "f": {"call": ""}}},
        {"names": {"len": {"call": ""}, "f": {"call": ""}}},
        {"names": {"f": {"call": "", "val": 1}}},
        {"names": {"f": {"call": ""}}, "extra": 1},
        {"names": ["f"]},
        {"names": {"f": {"mod": "os"}, "os": {"mod": "sys"}}},
        {"load_error": ["AssertionError", {"x": 1}]},
    ]
    for greeting in greetings:
        code = "GREETING = " + repr(greeting) + "\n" + GREETING_ATTACK
        blocked(sb.check(code, "assert len(f()) == 3"))
    honest(sb, "def f():\n    return [1, 2, 3]\n", "assert len(f()) == 3")


WIRE_ATTACK = """import sys
wire = sys.modules.get('wire')
real = wire.encode
def encode(value, *a, **k):
    if value == 'attack':
        return PAYLOAD
    return real(value, *a, **k)
wire.encode = encode
def f():
    return 'attack'
"""


def hostile_values_for_the_judge(sb) -> None:
    """Values the judge decodes on the candidate's behalf: a Fraction exponent that would take hours to
    expand, a huge hex int, deep nesting, unknown tags, exception names that are not exceptions."""
    payloads = [
        {"n": ["fractions.Fraction", "1e999999999"]},
        {"n": ["decimal.Decimal", "9" * 20000]},
        {"x": "f" * (1 << 23)},
        {"zz": 1},
        {"h": "not-an-int"},
        {"d": [[1]]},
        {"r": [0, "1", 1]},
        {"c": ["nan", "x"]},
        {"n": ["os.system", "ls"]},
    ]
    start = time.monotonic()
    for payload in payloads:
        blocked(
            sb.check(
                "PAYLOAD = " + repr(payload) + "\n" + WIRE_ATTACK,
                "from fractions import Fraction\nassert f() == Fraction(1, 3)",
            )
        )
    deep = "def f():\n    v = []\n    for _ in range(100000):\n        v = [v]\n    return v\n"
    blocked(sb.check(deep, "assert f() == 1"))
    err = "def f():\n    class SystemExit(Exception):\n        pass\n    raise SystemExit(0)\n"
    blocked(sb.check(err, "f()"))
    assert time.monotonic() - start < 60, "the judge spent too long decoding hostile values"
    honest(
        sb,
        "from fractions import Fraction\ndef f():\n    return Fraction(1, 3)\n",
        "from fractions import Fraction\nassert f() == Fraction(1, 3)",
    )


def processes_survive_timeout(sb) -> None:
    marker = f"{uuid.uuid4().int % 10**9 + 10**9}"
    code = (
        f"import os, subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        f"if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/usr/bin/sleep', ['sleep', '{marker}1'])\n    os._exit(0)\n"
        f"def f():\n    while True:\n        pass\n"
    )
    v = sb.check(code, "assert f() == 1", timeout_s=2.0)
    blocked(v)
    assert v.status == "timeout", v
    assert wait_gone(marker) == [], "a process of a timed-out execution survived it"
    honest(
        sb,
        "import subprocess\ndef f():\n    return subprocess.run(['echo', 'hi'], capture_output=True).stdout\n",
        "assert f() == b'hi\\n'",
    )


EVALUATOR = """import sys
sys.path.insert(0, sys.argv[1])
from phiray.config import SandboxConfig
from phiray.sandbox import Sandbox
code = ("import os, subprocess\\nsubprocess.Popen(['sleep', '%s'], start_new_session=True)\\n"
        "if os.fork() == 0:\\n    os.setsid()\\n    os.execv('/usr/bin/sleep', ['sleep', '%s1'])\\n"
        "def f():\\n    while True:\\n        pass\\n")
Sandbox(SandboxConfig(isolation="namespaces", timeout_s=60, cpu_s=60)).check_many(
    [{"code": code % (sys.argv[2], sys.argv[2]), "tests": "assert f() == 1"}] * 2)
"""


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    children = {int(c) for c in fh.read().split()}
                todo += list(children - found)
                found |= children
        except OSError:
            continue
    return found


def evaluator_sigkilled_mid_run(sb) -> None:
    """SIGKILL the evaluator (OOM killer, ray.kill) while two executions run: nothing of them may survive."""
    marker = f"{uuid.uuid4().int % 10**9 + 10**9}"
    repo = os.path.dirname(os.path.dirname(SANDBOX_DIR))
    proc = subprocess.Popen(
        [sys.executable, "-c", EVALUATOR, repo, marker],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        deadline = time.monotonic() + 30
        while len(processes_with(marker)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes_with(marker)) >= 4, "the executions never started"
        tree = descendants(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert wait_gone(marker) == [], "a candidate process outlived the SIGKILLed evaluator"
    assert wait_gone(sorted(tree)) == [], "a zygote/launcher/judge outlived the SIGKILLed evaluator"
    honest(sb, "def f():\n    return 1\n", "assert f() == 1")


MEMORY_ATTACK = """import ctypes, os
libc = ctypes.CDLL(None)
libc.shmat.restype = ctypes.c_void_p
def f():
    held = 0
    try:
        while held < LIMIT:
            fd = os.memfd_create('m')
            for _ in range(16):
                os.write(fd, b'x' * (1 << 20))
            held += 16
    except OSError:
        pass
    while held < LIMIT:
        shm = libc.shmget(0, 16 << 20, 0o1600)
        if shm < 0:
            break
        addr = libc.shmat(shm, None, 0)
        ctypes.memset(ctypes.c_void_p(addr), 1, 16 << 20)
        libc.shmdt(ctypes.c_void_p(addr))
        held += 16
    return held
"""


def zygote_killed_mid_run(sb) -> None:
    """The warm zygote SIGKILLed (OOM killer) while an execution runs: launcher, judge and candidate die
    with it (parent-death signals), the executor answers at once, and the next execution works."""
    import threading

    from phiray.sandbox import executor

    marker = f"{uuid.uuid4().int % 10**9 + 10**9}"
    code = (
        f"import os, subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        f"def f():\n    while True:\n        pass\n"
    )
    verdicts = []
    runner = threading.Thread(target=lambda: verdicts.append(sb.check(code, "assert f() == 1", timeout_s=30)))
    runner.start()
    deadline = time.monotonic() + 20
    while not processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    zygote = executor.ZYGOTE.proc
    tree = descendants(zygote.pid)
    zygote.kill()
    runner.join(10)
    assert not runner.is_alive(), "the executor kept waiting on an execution whose zygote died"
    blocked(verdicts[0])
    assert wait_gone(marker) == [] and wait_gone(sorted(tree)) == [], "a process outlived its zygote"
    honest(sb, "def f():\n    return 1\n", "assert f() == 1")


def memfd_and_shared_memory(sb) -> None:
    """Memory RLIMIT_AS does not see: memfd and SysV shm pages written and unmapped, many files of them."""
    code = MEMORY_ATTACK.replace("LIMIT", str(2 * MEMORY_MB))
    blocked(sb.check(code, f"assert f() >= {2 * MEMORY_MB}"))
    honest(sb, "def f():\n    return len(bytearray(8 << 20))\n", "assert f() == 8 << 20")


STOPPER_ATTACK = """import os, signal, time
if os.fork() == 0:
    os.setsid()
    seen = {os.getpid()}
    end = time.time() + 8
    while time.time() < end:
        for p in os.listdir('/proc') if os.path.isdir('/proc') else []:
            if p.isdigit() and int(p) not in seen:
                seen.add(int(p))
                try:
                    os.kill(int(p), signal.SIGSTOP)
                except OSError:
                    pass
    os._exit(0)
def f():
    time.sleep(0.3)
    return 1
"""


def sweeper_stopped_or_hung(sb) -> None:
    """A daemon SIGSTOPs every new process of its uid (the fallback sweeper) and never exits; the
    executor must still come back, in bounded time, and the next execution must work."""
    code = STOPPER_ATTACK
    start = time.monotonic()
    blocked(sb.check(code, "assert f() == 2", timeout_s=2.0))
    assert time.monotonic() - start < 15, "the executor waited on a stopped process"
    honest(sb, "def f():\n    return 2\n", "assert f() == 2")


PROC_ATTACK = """import ctypes, json, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def f():
    got = []
    try:
        os.makedirs('/tmp/p', exist_ok=True)
        if libc.mount(b'proc', b'/tmp/p', b'proc', 0, None) == 0:
            got.append('mounted proc')
    except OSError:
        pass
    roots = [r for r in ('/proc', '/tmp/p') if os.path.isdir(r)]
    pids = {1, os.getppid(), EVALUATOR} | {int(p) for r in roots for p in os.listdir(r) if p.isdigit()}
    pids.discard(os.getpid())
    for pid in sorted(pids):
        for r in roots or ['/proc']:
            for name in ('mem', 'environ', 'cmdline'):
                try:
                    data = open(f'{r}/{pid}/{name}', 'rb').read(1 << 16)
                    if name != 'cmdline' or SECRET.encode() in data:
                        got.append(f'{name} of {pid}')
                except OSError:
                    pass
            try:
                for fd in os.listdir(f'{r}/{pid}/fd'):
                    try:
                        with open(f'{r}/{pid}/fd/{fd}', 'w') as fh:
                            fh.write(json.dumps({'status': 'passed', 'token': ''}))
                        got.append(f'reopened fd {fd} of {pid}')
                    except OSError:
                        pass
            except OSError:
                pass
        if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
            got.append(f'ptrace {pid}')
        buf = ctypes.create_string_buffer(64)
        class iovec(ctypes.Structure):
            _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
        local, remote = iovec(ctypes.cast(buf, ctypes.c_void_p), 64), iovec(0x400000, 64)
        if libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) > 0:
            got.append(f'process_vm_readv {pid}')
    print(got)
    return got
"""


def reading_the_judge_and_the_evaluator(sb) -> None:
    """Token via /proc/<pid>/mem, verdict pipe reopened via /proc/<pid>/fd, ptrace, process_vm_readv,
    the evaluator's environment: every route tried against the judge, the launcher and the evaluator."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    os.environ["PHIRAY_ATTACK_SECRET"] = secret
    try:
        code = f"EVALUATOR = {os.getpid()}\nSECRET = {secret!r}\n" + PROC_ATTACK
        v = sb.check(code, "assert f() == []")
    finally:
        del os.environ["PHIRAY_ATTACK_SECRET"]
    assert v.passed, f"some route was open: {v.detail} {v.stdout[-500:]}"  # f() == [] holds: nothing worked
    assert secret not in v.stdout + v.stderr
    blocked(sb.check(code, "assert f() != []"))


def signalling_and_daemons(sb) -> None:
    """kill(-1), the evaluator's pid and PID 1 with every signal; then a setsid daemon that must not
    survive the execution. The judge still answers (the verdict below is a real pass)."""
    marker = f"{uuid.uuid4().int % 10**9 + 10**9}"
    code = (
        f"import os, signal, subprocess\ndef f():\n"
        f"    subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        f"    for pid in (-1, 1, os.getppid(), {os.getpid()}):\n"
        f"        for sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGINT, signal.SIGKILL):\n"
        f"            try:\n                os.kill(pid, sig)\n            except OSError:\n                pass\n"
        f"    return 1\n"
    )
    v = sb.check(code, "assert f() == 1")
    os.kill(os.getpid(), 0)
    assert v.passed, f"the judge did not survive the candidate's signals: {v}"
    assert wait_gone(marker) == [], "a setsid daemon survived its execution"
    blocked(sb.check(code, "assert f() == 2"))


ATTACKS = {
    fn.__name__: fn
    for fn in (
        planted_module_on_sys_path,
        shadowed_builtins,
        malicious_greeting,
        hostile_values_for_the_judge,
        processes_survive_timeout,
        evaluator_sigkilled_mid_run,
        zygote_killed_mid_run,
        memfd_and_shared_memory,
        sweeper_stopped_or_hung,
        reading_the_judge_and_the_evaluator,
        signalling_and_daemons,
    )
}


def make_sandbox():
    from phiray.config import SandboxConfig
    from phiray.sandbox import Sandbox

    return Sandbox(
        SandboxConfig(isolation="namespaces", timeout_s=5.0, cpu_s=4, memory_mb=MEMORY_MB, max_processes=16, workers=2)
    )


def humaneval_acceptance(limit: int | None) -> dict:
    """Canonical solutions (all must pass), `return None` stubs (none may), and the 50/50 mix (pass@1 0.5)."""
    from phiray.config import SandboxConfig
    from phiray.evals.benchmarks import load_humaneval
    from phiray.sandbox import Sandbox

    tasks = load_humaneval()[:limit]
    sb = Sandbox(SandboxConfig(isolation="namespaces", workers=2, timeout_s=60, cpu_s=60))
    good = sb.check_many([{"code": t.reference, "tests": t.tests, "entry_point": t.entry_point} for t in tasks])
    none = sb.check_many(
        [{"code": t.program("    return None\n"), "tests": t.tests, "entry_point": t.entry_point} for t in tasks]
    )
    mix = [g if i % 2 == 0 else n for i, (g, n) in enumerate(zip(good, none))]
    return {
        "tasks": len(tasks),
        "canonical_passed": sum(v.passed for v in good),
        "none_passed": sum(v.passed for v in none),
        "mix_pass_at_1": sum(v.passed for v in mix) / len(mix),
        "failures": [(t.task_id, v.status, v.detail[:200]) for t, v in zip(tasks, good) if not v.passed][:5],
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--humaneval":
        limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
        print(json.dumps({"uid": os.getuid(), "humaneval": humaneval_acceptance(limit)}))
        return 0
    sb, results = make_sandbox(), {}
    for name, attack in ATTACKS.items():
        try:
            attack(sb)
            results[name] = "ok"
        except Exception as err:  # noqa: BLE001 - reported per attack to the parent test
            results[name] = f"FAIL: {type(err).__name__}: {err}"
    print(json.dumps({"uid": os.getuid(), "isolation": sb.isolation, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
