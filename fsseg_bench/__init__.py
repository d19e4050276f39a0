"""fsseg-bench: a reproducible benchmark harness for few-shot semantic segmentation."""

__version__ = "0.1.0"
