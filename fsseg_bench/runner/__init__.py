"""Running a protocol: the run matrix, the record store, the feature cache and the executors."""

from .plan import RunRequest, plan_runs
from .execute import RunOutcome, run_one
from .executors import execute

__all__ = ["RunRequest", "plan_runs", "RunOutcome", "run_one", "execute"]
