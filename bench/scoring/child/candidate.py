"""The sandbox's only process: confine itself, then load the candidate's program and answer calls, or run it.

    python -I -S -B candidate.py CONFIG.json REQUEST_FD REPLY_FD     (started as root by `unshare`, never by hand)

Everything before the first message ("started", or "error" if a layer could not be applied) is trusted; from then
on the program owns this process, so the trusted side takes nothing from it but plain data and checks that too.
Modes: ``serve`` (strict) defines the program, then answers ``{"call", "args", "kwargs"}`` requests with
``{"call", "return"}``, ``{"call", "raised"}`` or ``{"call", "unplain"}``; ``run`` (paper) executes the program as
HF ``code_eval`` did, with its reliability guard, and reports ``{"done"}`` or ``{"raised"}``.
"""

import builtins
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import channel  # noqa: E402
import confine  # noqa: E402
import landlock  # noqa: E402
import plain  # noqa: E402
import seccomp  # noqa: E402

del sys.path[0]  # the program must not import the harness's modules by name

PROGRAM = "<program>"


def _confine(cfg: dict) -> list[str]:
    """Apply every layer the config asks for, in order; an OSError means none of the program runs."""
    layers = []
    limits = cfg["limits"]
    uid = cfg["uid"]
    if cfg["root"]:
        confine.build_root(cfg["root"], cfg["read"], cfg["devices"], limits["tmp_bytes"],
                           uid if uid is not None else 0, uid if uid is not None else 0)
        layers += ["own filesystem root (interpreter, packages, system libraries only)",
                   f"writes only to /tmp, {limits['tmp_bytes'] // 1024} KiB in all"]
    if cfg["landlock"]:  # as root still, which may open every path it names; it binds whoever we become next
        writable = ["/tmp"] if cfg["root"] else []
        layers += landlock.restrict(cfg["read"], writable + cfg["devices"])
    if cfg["drop"]:
        layers.append(confine.drop_privileges(uid))
    if cfg["seccomp"]:
        layers.append(seccomp.install())
    confine.set_limits(limits["memory_bytes"], limits["cpu_s"], limits["file_bytes"], limits["processes"])
    layers.append("rlimits")
    return layers


def _raised(exc: BaseException) -> dict:
    name = type(exc).__name__
    return {"raised": name if getattr(builtins, name, None) is type(exc) else None, "line": channel.line_in(exc, PROGRAM)}


def _guard() -> None:
    """HF ``code_eval``'s reliability guard (metrics/code_eval/execute.py): the functions it disabled are None.

    Semantics of the authors' harness (an answer calling ``exit()`` or ``os.getcwd()`` failed there), not security.
    """
    import shutil
    import subprocess

    builtins.exit = builtins.quit = builtins.help = None
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
                 "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def _serve(cfg: dict, chan: channel.Channel) -> None:
    namespace: dict = {}
    try:
        exec(compile(cfg["program"], PROGRAM, "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and the like are the program's failures too
        chan.send({"loaded": False, **_raised(exc)})
        return
    function = namespace.get(cfg["entry_point"])
    if not callable(function):
        chan.send({"loaded": False, "missing": True})
        return
    chan.send({"loaded": True})
    while True:
        try:
            request = chan.receive(None)
        except channel.ChannelError:
            return  # the judge is done
        reply: dict = {"call": request.get("call")}
        try:
            value = function(*plain.from_tagged(request["args"]), **plain.from_tagged(request["kwargs"]))
        except BaseException as exc:  # noqa: BLE001
            reply.update(_raised(exc))
        else:
            try:
                reply["return"] = plain.to_tagged(value)
            except plain.NotPlain as exc:
                reply["unplain"] = str(exc)
        chan.send(reply)


def _preload(program: str, modules: list[str]) -> None:
    """Import first those of the program's imports that code_eval's process already held: it was forked from the
    authors' script after ``import evaluate``, so numpy, pandas and the rest were loaded before the guard (numpy's
    own import calls os.putenv, which the guard disables)."""
    import ast
    import importlib

    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    wanted = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wanted.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            wanted.add(node.module.split(".")[0])
    for name in sorted(wanted.intersection(modules)):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - it fails again, as the program's own import, where it did there
            pass


def _run(cfg: dict, chan: channel.Channel) -> None:
    if cfg["guard"]:
        _preload(cfg["program"], cfg["preload"])
        _guard()
    try:
        exec(compile(cfg["program"], PROGRAM, "exec"), {})
    except BaseException as exc:  # noqa: BLE001
        chan.send(_raised(exc))
        return
    chan.send({"done": True})


def main() -> None:
    config_path, request_fd, reply_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(config_path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    os.unlink(config_path)
    chan = channel.Channel(request_fd, reply_fd)
    devnull = os.open("/dev/null", os.O_RDWR)
    try:
        layers = _confine(cfg)
    except OSError as exc:
        chan.send({"error": f"could not confine the program: {exc}"[:300]})
        os._exit(3)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.path.extend(cfg["site"])
    chan.send({"started": layers})
    (_serve if cfg["mode"] == "serve" else _run)(cfg, chan)
    os._exit(0)


main()
