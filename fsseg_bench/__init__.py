"""fsseg-bench: a reproducible benchmark harness for few-shot semantic segmentation.

The Python API (imported lazily, so `import fsseg_bench` stays cheap):

    run, train, load_results, summarise, table, compare, plot, cross_domain   (fsseg_bench.api)
    register_method, Method, Episode, load_protocol, InputError
    metrics: pooled mIoU, FB-IoU and the codebases' variants, from counts or from masks
"""

__version__ = "0.1.0"

_EXPORTS = {
    "run": "api", "train": "api", "load_results": "api", "summarise": "api", "table": "api", "compare": "api", "plot": "api",
    "cross_domain": "api",
    "register_method": "registry", "list_methods": "registry", "Method": "method", "Episode": "episode",
    "load_protocol": "protocol", "InputError": "errors",
}
__all__ = sorted([*_EXPORTS, "metrics"])


def __getattr__(name: str):
    if name == "metrics":  # the metric functions for one's own loop (fsseg_bench.metrics)
        import importlib

        return importlib.import_module(".metrics", __name__)
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'fsseg_bench' has no attribute {name!r}")
