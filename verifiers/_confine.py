"""Kernel confinement layers applied inside a sandbox worker: Landlock and seccomp.

Stdlib only (``ctypes``), because this file is also pasted in front of
``verifiers/_harness.py`` to form the script that runs inside the sandbox. It must
therefore not use ``from __future__`` imports and must not import ``verifiers``.

* Landlock (Linux >= 5.13) makes the filesystem read-only outside the writable
  paths and hides everything that is not on the read list; from ABI 4 it also
  denies every TCP bind/connect, and from ABI 6 it stops signals and abstract unix
  sockets from crossing the sandbox boundary.
* seccomp (x86_64 only) denies creating non-unix sockets (without bwrap, any
  socket but a ``socketpair``), namespaces, ptrace,
  mounts, io_uring, BPF, SysV IPC, POSIX message
  queues and module loading. ``clone3`` gets ENOSYS so that glibc
  falls back to ``clone``, whose flags the filter can inspect.

Both need ``no_new_privs``, which :func:`set_no_new_privs` sets.
"""

import ctypes
import errno
import os
import struct

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long
_LIBC.prctl.restype = ctypes.c_int

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_DUMPABLE = 4
_SECCOMP_MODE_FILTER = 2

# x86_64 syscall numbers (asm/unistd_64.h); seccomp is only applied on x86_64.
_NR_LANDLOCK_CREATE_RULESET = 444
_NR_LANDLOCK_ADD_RULE = 445
_NR_LANDLOCK_RESTRICT_SELF = 446
_NR_SOCKET = 41
_NR_CLONE = 56
_NR_CLONE3 = 435
_DENIED_SYSCALLS = (
    29,  # shmget (SysV IPC would outlive a run in a warm sandbox)
    30,  # shmat
    31,  # shmctl
    64,  # semget
    65,  # semop
    66,  # semctl
    68,  # msgget
    69,  # msgsnd
    70,  # msgrcv
    71,  # msgctl
    101,  # ptrace
    103,  # syslog
    155,  # pivot_root
    161,  # chroot
    163,  # acct
    165,  # mount
    166,  # umount2
    167,  # swapon
    168,  # swapoff
    169,  # reboot
    172,  # iopl
    173,  # ioperm
    175,  # init_module
    176,  # delete_module
    179,  # quotactl
    246,  # kexec_load
    248,  # add_key
    249,  # request_key
    250,  # keyctl
    272,  # unshare
    298,  # perf_event_open
    303,  # name_to_handle_at
    304,  # open_by_handle_at
    308,  # setns
    310,  # process_vm_readv
    311,  # process_vm_writev
    313,  # finit_module
    320,  # kexec_file_load
    321,  # bpf
    323,  # userfaultfd
    425,  # io_uring_setup
    426,  # io_uring_enter
    427,  # io_uring_register
    428,  # open_tree
    429,  # move_mount
    430,  # fsopen
    432,  # fsmount
    433,  # fspick
    442,  # mount_setattr
    220,  # semtimedop
    240,  # mq_open
    241,  # mq_unlink
)
_CLONE_NS_FLAGS = 0x7E020080  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
_AUDIT_ARCH_X86_64 = 0xC000003E
_AF_UNIX = 1

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_TRUNCATE = 1 << 14
_FS_IOCTL_DEV = 1 << 15
_NET_TCP = 0b11  # BIND_TCP | CONNECT_TCP
_SCOPE_ALL = 0b11  # ABSTRACT_UNIX_SOCKET | SIGNAL


def set_no_new_privs() -> None:
    """Forbid privilege gain through exec (required by seccomp and Landlock)."""
    if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def set_parent_death_signal(sig: int) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def set_not_dumpable() -> None:
    """Keep same-uid processes out of this one's memory (``/proc/PID/mem``, ptrace)."""
    _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def set_child_subreaper() -> None:
    """Become the reaper of orphaned descendants, so none escape the supervisor."""
    _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def landlock_abi() -> int:
    """Return the kernel's Landlock ABI version, or 0 when Landlock is unavailable."""
    abi = _LIBC.syscall(_NR_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint(1))
    return max(int(abi), 0) if os.uname().sysname == "Linux" else 0


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # EXECUTE .. MAKE_SYM (ABI 1)
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def apply_landlock(read_paths: list[str], write_paths: list[str], abi: int) -> int:
    """Restrict this process (and its future children) with Landlock.

    Args:
        read_paths: Files and directories that stay readable (and executable).
        write_paths: Directories (full access) or files (read/write) that stay writable.
        abi: ABI version from :func:`landlock_abi`; 0 does nothing.

    Returns:
        The ABI that was enforced (0 when nothing was applied).
    """
    if abi <= 0:
        return 0
    handled = _fs_rights(abi)
    attr = struct.pack("<Q", handled)
    if abi >= 4:
        attr += struct.pack("<Q", _NET_TCP)
    if abi >= 6:
        attr += struct.pack("<Q", _SCOPE_ALL)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _LIBC.syscall(
        _NR_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint(0)
    )
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    file_rights = handled & (_FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE)
    file_rights |= handled & _FS_IOCTL_DEV
    try:
        for path, writable in [(p, False) for p in read_paths] + [(p, True) for p in write_paths]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                is_dir = os.path.isdir(path)
                if writable:
                    access = handled if is_dir else file_rights
                else:
                    access = _FS_EXECUTE | _FS_READ_FILE | (_FS_READ_DIR if is_dir else 0)
                rule = ctypes.create_string_buffer(struct.pack("<Qi", access, fd), 12)
                if _LIBC.syscall(_NR_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), 1, rule, 0) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
            finally:
                os.close(fd)
        if _LIBC.syscall(_NR_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


def seccomp_supported() -> bool:
    """True where :func:`apply_seccomp` knows the syscall table (x86_64 Linux)."""
    return os.uname().sysname == "Linux" and os.uname().machine == "x86_64"


def _seccomp_program(allow_unix: bool = True) -> list[tuple[int, int, int, int]]:
    ld_abs, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    eperm, enosys = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    prog: list[tuple] = [
        (ld_abs, 0, 0, 4),  # arch
        (jeq, 0, "kill", _AUDIT_ARCH_X86_64),
        (ld_abs, 0, 0, 0),  # syscall number
        (jge, "enosys", 0, 0x40000000),  # x32 ABI
        (jeq, "socket", 0, _NR_SOCKET),
        (jeq, "clone", 0, _NR_CLONE),
        (jeq, "enosys", 0, _NR_CLONE3),
    ]
    prog += [(jeq, "eperm", 0, nr) for nr in _DENIED_SYSCALLS]
    prog += [
        (ret, 0, 0, allow),
        "socket",
        (ld_abs, 0, 0, 16),  # args[0], low 32 bits
        (jeq, "allow" if allow_unix else "eperm", "eperm", _AF_UNIX),
        "clone",
        (ld_abs, 0, 0, 16),
        (jset, "eperm", "allow", _CLONE_NS_FLAGS),
        "allow",
        (ret, 0, 0, allow),
        "eperm",
        (ret, 0, 0, eperm),
        "enosys",
        (ret, 0, 0, enosys),
        "kill",
        (ret, 0, 0, kill),
    ]
    labels, pos = {}, 0
    for item in prog:
        if isinstance(item, str):
            labels[item] = pos
        else:
            pos += 1
    out, pos = [], 0
    for item in prog:
        if isinstance(item, str):
            continue
        code, jt, jf, k = item
        jt = labels[jt] - pos - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - pos - 1 if isinstance(jf, str) else jf
        out.append((code, jt, jf, k))
        pos += 1
    return out


def apply_seccomp(allow_unix: bool = True) -> bool:
    """Install the seccomp filter described in the module docstring.

    Args:
        allow_unix: Let ``socket(AF_UNIX)`` through. Without a mount namespace the
            host's unix-domain sockets are reachable by path (Landlock does not cover
            ``connect``), so the Landlock-only fallback passes False; ``socketpair``
            stays allowed either way.

    Returns:
        True when the filter is in place, False on unsupported platforms.
    """
    if not seccomp_supported():
        return False
    insns = _seccomp_program(allow_unix)
    raw = b"".join(struct.pack("<HBBI", *insn) for insn in insns)
    filt = ctypes.create_string_buffer(raw, len(raw))

    class _SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _SockFprog(len(insns), ctypes.cast(filt, ctypes.c_void_p))
    set_no_new_privs()
    if _LIBC.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
    return True
