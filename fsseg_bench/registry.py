"""The method registry: `@register_method`, `create_method`, `list_methods`.

Three ways in: the plugin files in the repository's `methods/` folder (every `*.py`, found by
path, no import list to edit), the entry-point group `fsseg_bench.methods` of installed packages,
and `--plugin FILE.py` on the command line. Each entry remembers where it came from, so a
duplicate name is reported with both origins.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from .contenthash import file_sha256
from .errors import InputError
from .paths import METHODS_DIR

ENTRY_POINT_GROUP = "fsseg_bench.methods"
METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class MethodEntry:
    name: str
    factory: Callable
    description: str
    origin: str
    trainable: bool


_REGISTRY: dict[str, MethodEntry] = {}
_LOADED_SOURCES: dict[str, str] = {}  # plugin path (or scan key) -> content sha256
_current_origin: list[str] = []  # set while a plugin file or entry point is being imported


def _origin_of(factory: Callable) -> str:
    if _current_origin:
        return _current_origin[-1]
    try:
        source = inspect.getsourcefile(factory)
    except (TypeError, OSError):  # built in __main__ by `python -c`, a notebook cell, ...
        source = None
    return f"module {factory.__module__} ({source})" if source else f"module {factory.__module__}"


def register_method(name: str, description: str = "", trainable: bool | None = None):
    """Decorator for a Method subclass or a factory returning a Method."""

    if not isinstance(name, str) or not METHOD_NAME.fullmatch(name) or ".." in name:
        raise InputError(f"method name {name!r}: expected letters, digits, '.', '_' or '-' (it names a results folder)")

    def decorator(factory: Callable) -> Callable:
        origin = _origin_of(factory)
        if name in _REGISTRY:
            previous = _REGISTRY[name]
            if getattr(factory, "__module__", None) == "__main__" and previous.factory.__module__ == "__main__":
                # A notebook cell or script run again: the new definition replaces the old one.
                from .console import warn

                warn(f"method {name!r} registered again from __main__: the new definition replaces the old one")
            elif previous.origin != origin:  # the same plugin file re-imported after an edit replaces itself
                raise InputError(f"method {name!r} registered twice: by {previous.origin} and by {origin}")
        is_trainable = trainable if trainable is not None else bool(getattr(factory, "trainable", False))
        text = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _REGISTRY[name] = MethodEntry(name, factory, text, origin, is_trainable)
        return factory

    return decorator


def load_plugin_file(path: str | Path, kind: str = "plugin") -> None:
    """Import a plugin file once per content: a file edited since it was imported is imported again
    (its methods replace their old definitions), so a long-lived process never runs stale code.
    The file's folder is appended to sys.path, so the plugin can import the modules beside it."""
    path = Path(path).resolve()
    if not path.is_file() or path.suffix != ".py":
        raise InputError(f"{path}: plugin file not found (expected a .py file)")
    content = file_sha256(path)
    if _LOADED_SOURCES.get(str(path)) == content:
        return
    where = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    module_name = f"fsseg_bench_plugins.{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{where}_{content[:12]}"
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _current_origin.append(f"{kind} {path}")
    try:
        spec.loader.exec_module(module)
    except InputError:
        sys.modules.pop(module_name, None)
        raise
    except BaseException as exc:  # a plugin that fails to import is bad input, said in one line
        sys.modules.pop(module_name, None)
        where = _plugin_line(exc, path)
        raise InputError(f"{path}{where}: the plugin failed to import ({type(exc).__name__}: {exc})") from None
    finally:
        _current_origin.pop()
    _LOADED_SOURCES[str(path)] = content


def _plugin_line(exc: BaseException, path: Path) -> str:
    """':LINE' of the deepest frame of the plugin file in the traceback, for the one-line error."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f":{exc.lineno}"
    line = ""
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path:
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line


def load_builtin_methods() -> None:
    for path in sorted(METHODS_DIR.glob("*.py")):
        if not path.name.startswith("_"):
            load_plugin_file(path, kind="built-in")


def load_entry_points() -> None:
    # Scanning installed distributions costs tens of ms: once per process (and path) is enough.
    scan_key = f"entry-points-scanned:{len(sys.path)}:{hash(tuple(sys.path))}"
    if scan_key in _LOADED_SOURCES:
        return
    _LOADED_SOURCES[scan_key] = ""
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry-point:{entry_point.value}"
        if key in _LOADED_SOURCES:
            continue
        _LOADED_SOURCES[key] = ""
        _current_origin.append(f"entry point {entry_point.name} = {entry_point.value}")
        try:
            loaded = entry_point.load()
            # An entry point may name a module whose import registers methods, or an
            # unregistered factory, which is registered under the entry point's name.
            if callable(loaded) and not any(e.factory is loaded for e in _REGISTRY.values()):
                register_method(entry_point.name)(loaded)
        finally:
            _current_origin.pop()


def load_methods(plugins: list[str | Path] = ()) -> None:
    """Load built-in plugins, entry points and the given plugin files (each at most once)."""
    load_builtin_methods()
    load_entry_points()
    for plugin in plugins:
        load_plugin_file(plugin)


def list_methods() -> list[MethodEntry]:
    load_methods()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_entry(name: str) -> MethodEntry:
    load_methods()
    if name not in _REGISTRY:
        by_lower = {known.lower(): known for known in _REGISTRY}
        close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)]
        hint = (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else
                "; a plugin's method needs its file: --plugin FILE.py")
        raise InputError(f"unknown method {name!r}{hint} (`fsseg-bench methods` lists them)")
    return _REGISTRY[name]


def accepted_options(name: str) -> set[str]:
    """Keyword options the method's factory takes (so a runner passes only those it knows)."""
    signature = inspect.signature(get_entry(name).factory)
    return {p.name for p in signature.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def create_method(name: str, **config):
    """Build a method; an option its factory does not take is an error naming it."""
    entry = get_entry(name)
    signature = inspect.signature(entry.factory)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(config) - accepted_options(name)) if not takes_any else []
    if unknown:
        raise InputError(f"method {name!r}: unknown option {unknown[0]!r} (takes: {', '.join(sorted(accepted_options(name))) or 'none'})")
    method = entry.factory(**config)
    method.registry_name = name
    return method
