"""Fingerprints of what a run reads besides its configuration: the method's code and the data.

- Code: sha256 over the source files of the module that defines the method and of every module
  it imports from, transitively, that belongs to the project (`fsseg_bench.*`, plugin files and
  modules beside the defining file); third-party and standard-library modules are identified by
  the versions run.json records instead. A method defined where no source file exists (`python
  -c`, a notebook cell) is fingerprinted by its source text when Python can find it, else by its
  bytecode. A method may also declare `version = "..."`, which is hashed in as well.
- Data: sha256 over the content hashes of each image and mask an episode list names (from the
  class index, which hashes every file of a split when it scans it), so a changed mask or image
  changes it, and moving or copying the tree does not.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

PROJECT_PREFIXES = ("fsseg_bench", "fsseg_bench_plugins")


def _module_file(module: types.ModuleType) -> Path | None:
    path = getattr(module, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return None
    path = Path(path)
    return path if path.is_file() else None


def _referenced_modules(module: types.ModuleType) -> set[str]:
    names = set()
    for value in list(vars(module).values()):
        if isinstance(value, types.ModuleType):
            names.add(value.__name__)
        else:
            owner = getattr(value, "__module__", None)
            if isinstance(owner, str) and (inspect.isclass(value) or inspect.isfunction(value)):
                names.add(owner)
    return names


def project_modules(root_module: str) -> list[types.ModuleType]:
    """The defining module and, transitively, the project modules it imports from."""
    root = sys.modules.get(root_module)
    if root is None:
        return []
    root_file = _module_file(root)
    root_dir = root_file.parent if root_file else None

    def in_project(name: str) -> bool:
        module = sys.modules.get(name)
        if module is None:
            return False
        if name.split(".")[0] in PROJECT_PREFIXES:
            return True
        path = _module_file(module)
        return root_dir is not None and path is not None and path.parent == root_dir

    seen, queue = {root_module}, [root_module]
    while queue:
        for name in _referenced_modules(sys.modules[queue.pop()]):
            if name not in seen and in_project(name):
                seen.add(name)
                queue.append(name)
    return [sys.modules[name] for name in sorted(seen)]


def _stable_name(module: types.ModuleType) -> str:
    """A name that does not depend on where the project lives: the dotted name for the package,
    the file name for plugin files (whose module names embed their path)."""
    if module.__name__.split(".")[0] == "fsseg_bench":
        return module.__name__
    path = _module_file(module)
    return path.name if path else module.__name__


def _code_objects_bytes(factory) -> bytes:
    """Bytecode of a function, or of every function of a class (fallback when no source exists)."""
    chunks = []
    members = [factory] if inspect.isfunction(factory) else [
        value for _, value in sorted(vars(factory).items()) if inspect.isfunction(value)]
    for function in members:
        code = function.__code__.replace(co_filename="", co_firstlineno=1)
        chunks.append(marshal.dumps(code))
    return b"".join(chunks)


@lru_cache(maxsize=None)
def code_fingerprint(factory: Callable) -> tuple[str, tuple[str, ...], str]:
    """(sha256, the files or pieces hashed, how: "files" | "source" | "bytecode")."""
    digest = hashlib.sha256()
    version = getattr(factory, "version", None)
    if version is not None:
        digest.update(f"version={version}\n".encode())
    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    if module is not None and _module_file(module) is not None:
        pieces = []
        for member in project_modules(module.__name__):
            path = _module_file(member)
            if path is None:
                continue
            name = _stable_name(member)
            pieces.append(name)
            digest.update(f"{name}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest(), tuple(pieces), "files"
    try:
        digest.update(inspect.getsource(factory).encode())
        how = "source"
    except (OSError, TypeError):
        digest.update(_code_objects_bytes(factory))
        how = "bytecode"
    return digest.hexdigest(), (f"{getattr(factory, '__qualname__', factory)}",), how


def data_fingerprint(image_ids: Iterable[str], file_sha256: dict[str, tuple[str, str]]) -> str:
    """sha256 over (id, image sha256, mask sha256) of each distinct id, in sorted order."""
    digest = hashlib.sha256()
    for image_id in sorted(set(image_ids)):
        image, mask = file_sha256[image_id]
        digest.update(f"{image_id}|{image}|{mask}\n".encode())
    return digest.hexdigest()
