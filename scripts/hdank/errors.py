"""The base class of every error that is the user's to fix (bad extract, config or data)."""


class UserError(Exception):
    """A problem in the inputs, reported as one clear message instead of a traceback."""


class StudyError(UserError):
    """The data cannot support the requested analysis (e.g. an arm is empty)."""
