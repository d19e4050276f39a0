"""Fingerprints of what a run reads besides its configuration: the code it runs and the data.

Code is identified in two steps, the way build systems treat "what did this step read":

- **Before the run** (`code_fingerprint`, part of the run id): sha256 over the module that
  defines the method and every project module it imports, transitively (static references), plus
  the harness modules on the path from files to records (statically imported by the runner:
  readers, preprocessing, resampling, sampling, scoring, metrics, the method helpers). A project
  module is a `fsseg_bench` module that is not orchestration-only (`ORCHESTRATION`), or a module
  whose file lies in the plugin's folder or below it (outside any site-packages).
- **After the run** (`loaded_closure`, recorded in run.json as `code_closure`): every such module
  loaded in the process once the run is done, lazily imported ones included (a helper imported
  inside `predict()`, a reader imported for one layout). Reuse of a complete run re-hashes that
  list (`closure_changes`): any difference makes the run stale, and it is recomputed.

Each file is hashed by its syntax tree with docstrings removed (`source_sha256`), so comment,
blank-line, formatting and docstring edits keep the identity; anything that changes what the code
does changes it. A method defined where no source file exists (a notebook cell, `python -c`) is
fingerprinted by its source text when Python can find it, else by its bytecode with every file
name removed at every nesting level (a notebook's cells live in `/tmp/ipykernel_<pid>/`, which
changes per kernel). A method may also declare `version = "..."`, hashed in as well.

Data: `data_fingerprint` is sha256 over the content hashes of each image and mask an episode list
names (the class index hashes every file of a split when it scans it).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import marshal
import os
import sys
import sysconfig
import types
from pathlib import Path
from typing import Callable, Iterable

from .contenthash import stat_key
from .errors import InputError

# Harness modules that cannot change a record: orchestration, caches that verify what they serve,
# writers of data that is itself hashed by content, reporting. Everything else under fsseg_bench
# is on the record path and hashed. tests/test_identity.py traces a run and fails when a harness
# module that executes while records are computed is neither hashed nor listed here.
ORCHESTRATION = frozenset({
    "fsseg_bench", "fsseg_bench.__main__", "fsseg_bench.aggregates", "fsseg_bench.api", "fsseg_bench.cli",
    "fsseg_bench.comparisons", "fsseg_bench.console", "fsseg_bench.contenthash", "fsseg_bench.demo",
    "fsseg_bench.episode_import", "fsseg_bench.errors", "fsseg_bench.fingerprints", "fsseg_bench.lru",
    "fsseg_bench.paths", "fsseg_bench.registry", "fsseg_bench.results", "fsseg_bench.stats",
    "fsseg_bench.training", "fsseg_bench.data.coco_prepare", "fsseg_bench.data.sbd", "fsseg_bench.data.standins",
    "fsseg_bench.data.synthetic", "fsseg_bench.runner", "fsseg_bench.runner.bench",
    "fsseg_bench.runner.executors", "fsseg_bench.runner.feature_store", "fsseg_bench.runner.features",
    "fsseg_bench.runner.inventory", "fsseg_bench.runner.plan", "fsseg_bench.runner.provenance",
    "fsseg_bench.runner.store",
})
ORCHESTRATION_PACKAGES = ("fsseg_bench.report",)
# Where the runner's record path starts: its static imports are the harness half of the closure.
HARNESS_ROOT = "fsseg_bench.runner.execute"
PLUGIN_PREFIX = "fsseg_bench_plugins."  # module names the registry gives plugin files


def is_orchestration(name: str) -> bool:
    return name in ORCHESTRATION or any(name == p or name.startswith(p + ".") for p in ORCHESTRATION_PACKAGES)


def module_file(module: types.ModuleType) -> Path | None:
    path = getattr(module, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return None
    return _as_path(str(path)) if os.path.isfile(path) else None


@functools.lru_cache(maxsize=None)
def _as_path(path: str) -> Path:
    return Path(path)  # every run asks for every loaded module's file: build each Path once


# --- hashing one source file --------------------------------------------------------------------

_SOURCE_SHA256: dict[tuple, str] = {}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_sha256(path: str | Path) -> str:
    """sha256 of a Python file's syntax tree without docstrings (a file that does not parse: of its
    bytes), memoised by the file's stat key."""
    path = Path(path)
    key = (str(path), *stat_key(path))
    cached = _SOURCE_SHA256.get(key)
    if cached is None:
        data = path.read_bytes()
        try:
            tree = _strip_docstrings(ast.parse(data, filename=""))
            payload = ast.dump(tree, include_attributes=False).encode()
        except (SyntaxError, ValueError):
            payload = b"bytes:" + data
        cached = _SOURCE_SHA256[key] = hashlib.sha256(payload).hexdigest()
    return cached


# --- which modules belong to a method -----------------------------------------------------------

_SITE_DIRS = tuple({str(Path(p).resolve()) for p in (sysconfig.get_paths().get("purelib"),
                                                      sysconfig.get_paths().get("platlib"), sys.prefix,
                                                      sys.base_prefix, sys.exec_prefix) if p})


@functools.lru_cache(maxsize=None)
def _resolved(path: str) -> Path:
    """A module file's real path: asked for every loaded module on every run, so memoised (where a
    file lives decides only whether it belongs to a closure; its content is hashed each time)."""
    return Path(path).resolve()


@functools.lru_cache(maxsize=None)
def _installed_path(path: str) -> bool:
    parts = Path(path).parts
    text = str(_resolved(path))
    return ("site-packages" in parts or "dist-packages" in parts
            or any(text.startswith(site + "/") for site in _SITE_DIRS))


def _installed(path: Path) -> bool:
    return _installed_path(str(path))


def _plugin_folder(root: types.ModuleType) -> Path | None:
    """The folder of the defining file, whose modules (and packages below it) are the method's own."""
    path = module_file(root)
    if path is None or root.__name__.split(".")[0] == "fsseg_bench":
        return None
    return path.resolve().parent


def _in_folder(module: types.ModuleType, folder: Path | None) -> bool:
    if folder is None:
        return False
    path = module_file(module)
    if path is None:
        return False
    return _path_in_folder(str(path), str(folder))


@functools.lru_cache(maxsize=None)
def _path_in_folder(path: str, folder: str) -> bool:
    resolved = _resolved(path)
    return Path(folder) in resolved.parents and not _installed(resolved)


def _is_project(module: types.ModuleType, folder: Path | None) -> bool:
    name = module.__name__
    if name.split(".")[0] == "fsseg_bench":
        return not is_orchestration(name) and module_file(module) is not None
    return name.startswith(PLUGIN_PREFIX) or _in_folder(module, folder)


def _referenced_modules(module: types.ModuleType) -> set[str]:
    names = set()
    # A harness package's submodules appear as its attributes once anything imported them, so
    # following them would make the static set depend on what this process ran before.
    harness_package = hasattr(module, "__path__") and module.__name__.split(".")[0] == "fsseg_bench"
    for value in list(vars(module).values()):
        if isinstance(value, types.ModuleType):
            if not (harness_package and value.__name__.startswith(module.__name__ + ".")):
                names.add(value.__name__)
        else:
            owner = getattr(value, "__module__", None)
            if isinstance(owner, str) and (inspect.isclass(value) or inspect.isfunction(value)):
                names.add(owner)
    # A module's parent package runs on import (its __init__).
    if "." in module.__name__:
        names.add(module.__name__.rsplit(".", 1)[0])
    return names


def static_modules(root_name: str) -> list[types.ModuleType]:
    """The defining module, the project modules it imports from (transitively), and the harness's
    record path (the runner's own static imports): what is known before a run starts."""
    root = sys.modules.get(root_name)
    folder = _plugin_folder(root) if root is not None else None
    seen, queue = set(), []
    for start in (root_name, HARNESS_ROOT):
        module = sys.modules.get(start)
        if module is None and start == HARNESS_ROOT:
            import importlib

            module = importlib.import_module(HARNESS_ROOT)
        if module is not None and start not in seen:
            seen.add(start)
            queue.append(start)
    while queue:
        for name in _referenced_modules(sys.modules[queue.pop()]):
            module = sys.modules.get(name)
            if name not in seen and module is not None and _is_project(module, folder):
                seen.add(name)
                queue.append(name)
    return [sys.modules[name] for name in sorted(seen) if module_file(sys.modules[name]) is not None]


def _stable_name(module: types.ModuleType, folder: Path | None) -> str:
    """A name that does not depend on where the project lives: the dotted name for the harness, the
    path below the plugin's folder for the plugin's own files (plugin module names embed a hash of
    their path)."""
    if module.__name__.split(".")[0] == "fsseg_bench":
        return module.__name__
    path = module_file(module)
    if path is None:
        return module.__name__
    resolved = _resolved(str(path))
    if folder is not None and folder in resolved.parents:
        return resolved.relative_to(folder).as_posix()
    return path.name


# The sha256 each module object had when this process first hashed it: a module edited on disk after
# it was imported (and not reloaded) runs other code than its file says.
_FIRST_SHA256: dict[int, tuple[types.ModuleType, str]] = {}


def _module_sha256(module: types.ModuleType) -> str:
    path = module_file(module)
    sha256 = source_sha256(path)
    first = _FIRST_SHA256.setdefault(id(module), (module, sha256))
    if first[0] is module and first[1] != sha256:
        raise InputError(f"{path}: edited after this process imported it, so the code running is not the code on "
                         f"disk; restart the process (or importlib.reload the module) and run again")
    return sha256


# --- the code fingerprint -----------------------------------------------------------------------

def _normalised_code(code: types.CodeType) -> types.CodeType:
    """The code object without file names, at every nesting level."""
    consts = tuple(_normalised_code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename="", co_consts=consts)


def _member_bytes(value) -> bytes:
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        return b"|".join(_member_bytes(f) for f in (value.fget, value.fset, value.fdel) if f is not None)
    if inspect.isfunction(value):
        return marshal.dumps(_normalised_code(value.__code__))
    if isinstance(value, (str, int, float, bool, bytes, type(None), tuple, frozenset)):
        return repr(value).encode()
    return type(value).__qualname__.encode()


def _bytecode(factory) -> bytes:
    """A function's code, or a class's members (and those of its bases defined beside it)."""
    if inspect.isfunction(factory):
        return marshal.dumps(_normalised_code(factory.__code__))
    chunks = []
    for klass in inspect.getmro(factory):
        if klass.__module__ != factory.__module__:
            continue
        chunks.append(klass.__qualname__.encode())
        for name, value in sorted(vars(klass).items()):
            if name in ("__dict__", "__weakref__", "__module__", "__doc__", "__qualname__"):
                continue
            chunks.append(name.encode() + b"=" + _member_bytes(value))
    return b"\n".join(chunks)


def _code_of(factory):
    if inspect.isfunction(factory):
        return factory.__code__
    for value in vars(factory).values() if inspect.isclass(factory) else ():
        value = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if inspect.isfunction(value):
            return value.__code__
    return None


def defined_in_file(factory) -> bool:
    """True when the factory's code comes from its module's file (not from a notebook cell or an
    exec'd string in `__main__`, whose module file, if any, is some other script)."""
    root = sys.modules.get(getattr(factory, "__module__", "") or "")
    path = module_file(root) if root is not None else None
    if path is None:
        return False
    code = _code_of(factory)
    if code is None:
        return True
    try:
        return Path(code.co_filename).resolve() == path.resolve()
    except (OSError, RuntimeError):
        return False


def code_fingerprint(factory: Callable) -> tuple[str, tuple[str, ...], str]:
    """(sha256, the files or pieces hashed, how: "files" | "source" | "bytecode")."""
    digest = hashlib.sha256()
    version = getattr(factory, "version", None)
    if version is not None:
        digest.update(f"version={version}\n".encode())
    root_name = getattr(factory, "__module__", "") or ""
    in_file = defined_in_file(factory)
    if not in_file:
        root_name = ""  # its module's file (a notebook's, a runner script's) is not its code
    root = sys.modules.get(root_name)
    folder = _plugin_folder(root) if root is not None else None
    pieces = []
    how = "files"
    if not in_file:
        try:
            digest.update(inspect.getsource(factory).encode())
            how = "source"
        except (OSError, TypeError):
            digest.update(_bytecode(factory))
            how = "bytecode"
        pieces.append(f"{getattr(factory, '__qualname__', factory)}")
    for module in static_modules(root_name):
        name = _stable_name(module, folder)
        pieces.append(name)
        digest.update(f"{name}\n{_module_sha256(module)}\n".encode())
    return digest.hexdigest(), tuple(pieces), how


def loaded_closure(factory: Callable) -> list[dict]:
    """Every project module loaded in this process now (after a run): the static modules, the
    harness's record-path modules and the plugin folder's modules, lazily imported ones included.
    Other plugin files the registry loaded are left out (they are other methods).
    [{name, path, sha256}], sorted by name."""
    root_name = getattr(factory, "__module__", "") or "" if defined_in_file(factory) else ""
    root = sys.modules.get(root_name)
    folder = _plugin_folder(root) if root is not None else None
    static = {module.__name__ for module in static_modules(root_name)}
    entries = {}
    for name, module in list(sys.modules.items()):
        if module is None or module_file(module) is None:
            continue
        if name not in static:
            if name.split(".")[0] == "fsseg_bench":
                if is_orchestration(name):
                    continue
            elif name.startswith(PLUGIN_PREFIX) or not _in_folder(module, folder):
                continue
        stable = _stable_name(module, folder)
        entries[stable] = {"name": stable, "path": str(_resolved(str(module_file(module)))),
                           "sha256": _module_sha256(module)}
    return [entries[name] for name in sorted(entries)]


def closure_changes(closure: list[dict] | None) -> list[str]:
    """The recorded modules whose file is gone or hashes otherwise now (empty: unchanged)."""
    changed = []
    for entry in closure or []:
        try:
            if source_sha256(entry["path"]) != entry["sha256"]:
                changed.append(entry["name"])
        except (OSError, KeyError, TypeError):
            changed.append(f"{entry.get('name', '?') if isinstance(entry, dict) else '?'} (gone)")
    return changed


def data_fingerprint(image_ids: Iterable[str], file_sha256: dict[str, tuple[str, str]]) -> str:
    """sha256 over (id, image sha256, mask sha256) of each distinct id, in sorted order."""
    digest = hashlib.sha256()
    for image_id in sorted(set(image_ids)):
        image, mask = file_sha256[image_id]
        digest.update(f"{image_id}|{image}|{mask}\n".encode())
    return digest.hexdigest()
