"""Where the project's own folders live.

In a source checkout (and an editable install) the built-in `protocols/` and `methods/` folders
sit beside the package in the repository root; a wheel carries them inside the package as
`builtin_protocols/` and `builtin_methods/` (see pyproject.toml). The checkout wins when both exist.
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "protocols").is_dir()
PROTOCOLS_DIR = REPO_ROOT / "protocols" if IN_CHECKOUT else PACKAGE_DIR / "builtin_protocols"
EPISODES_DIR = PROTOCOLS_DIR / "episodes"
METHODS_DIR = REPO_ROOT / "methods" if IN_CHECKOUT else PACKAGE_DIR / "builtin_methods"
DEFAULT_RESULTS_DIR = Path("results")
DATA_ENV_VAR = "FSSEG_BENCH_DATA"


def default_data_root() -> Path | None:
    value = os.environ.get(DATA_ENV_VAR)
    return Path(value) if value else None
