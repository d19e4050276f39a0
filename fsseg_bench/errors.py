"""The exceptions the CLI reports in one line: `InputError` ("the user's input is wrong", exit 2)
and `TrainingDiverged` (a training run whose loss stopped being finite, exit 1). Anything else is
a bug and keeps its traceback.
"""


class InputError(Exception):
    """Bad input: the message names the file or value and what was expected."""


class TrainingDiverged(Exception):
    """A training loss became NaN or infinite: no final checkpoint is written."""
