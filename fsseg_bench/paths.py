"""Where the project's own folders live.

fsseg-bench is installed editable (`pip install -e .`), so the built-in `protocols/` and
`methods/` folders sit beside the package in the repository root.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS_DIR = REPO_ROOT / "protocols"
EPISODES_DIR = PROTOCOLS_DIR / "episodes"
METHODS_DIR = REPO_ROOT / "methods"
DEFAULT_RESULTS_DIR = Path("results")
DATA_ENV_VAR = "FSSEG_BENCH_DATA"


def default_data_root() -> Path | None:
    value = os.environ.get(DATA_ENV_VAR)
    return Path(value) if value else None
