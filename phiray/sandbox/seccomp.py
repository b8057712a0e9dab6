"""A seccomp filter for the candidate (stdlib only, ctypes; loaded by the zygote, see launcher.py).

Denies the system calls that reach past the sandbox's bounds: memory outside RLIMIT_AS and every file-size
bound (memfd_create, SysV shm), new namespaces and mounts (the candidate could otherwise build a user
namespace of its own and mount an unbounded tmpfs), and looking into other processes (ptrace,
process_vm_readv/writev). Everything else is allowed: Python and its stdlib need nothing on the list.
clone3 answers ENOSYS so that libc falls back to clone, whose namespace flags the filter can see.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
EPERM, ENOSYS = 1, 38
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
NAMESPACE_FLAGS = 0x10000000 | 0x00020000 | 0x20000000 | 0x40000000 | 0x08000000 | 0x04000000 | 0x02000000
ARCHES = {  # audit arch, then syscall numbers: denied with EPERM, clone, clone3
    "x86_64": (
        0xC000003E,
        {
            "memfd_create": 319,
            "memfd_secret": 447,
            "shmget": 29,
            "unshare": 272,
            "setns": 308,
            "mount": 165,
            "pivot_root": 155,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "userfaultfd": 323,
            "bpf": 321,
            "perf_event_open": 298,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "io_uring_setup": 425,
            "fsopen": 430,
            "open_tree": 428,
            "move_mount": 429,
        },
        56,
        435,
    ),
    "aarch64": (
        0xC00000B7,
        {
            "memfd_create": 279,
            "memfd_secret": 447,
            "shmget": 194,
            "unshare": 97,
            "setns": 268,
            "mount": 40,
            "pivot_root": 41,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "userfaultfd": 282,
            "bpf": 280,
            "perf_event_open": 241,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "io_uring_setup": 425,
            "fsopen": 430,
            "open_tree": 428,
            "move_mount": 429,
        },
        220,
        435,
    ),
}


class _Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Instruction))]


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions. A foreign architecture's calls are all denied."""
    arch, denied, clone, clone3 = ARCHES[machine]
    deny, nosys = (RET_K, 0, 0, RET_ERRNO | EPERM), (RET_K, 0, 0, RET_ERRNO | ENOSYS)
    body: list[tuple[int, int, int, int]] = []
    for number in denied.values():
        body.append((JEQ_K, 0, 1, number))
        body.append(deny)
    body += [
        (JEQ_K, 0, 1, clone3),
        nosys,
        (JEQ_K, 0, 3, clone),
        (LD_W_ABS, 0, 0, 16),
        (JSET_K, 0, 1, NAMESPACE_FLAGS),
        deny,
        (RET_K, 0, 0, RET_ALLOW),
    ]
    head = [
        (LD_W_ABS, 0, 0, 4),
        (JEQ_K, 1, 0, arch),
        deny,
        (LD_W_ABS, 0, 0, 0),
        (JGE_K, 0, 1, 0x40000000),
        deny,
    ]  # x32 calls on x86_64: denied too
    return head + body


def available() -> bool:
    return os.uname().machine in ARCHES


def install() -> None:
    """Install the filter on this thread (needs no_new_privs, which the sandbox sets first)."""
    instructions = program(os.uname().machine)
    array = (_Instruction * len(instructions))(*[_Instruction(*i) for i in instructions])
    prog = _Program(len(instructions), ctypes.cast(array, ctypes.POINTER(_Instruction)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0):
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
