"""The one helper that Snakemake adapters (``scripts/<rule>.py``) call.

It sends log output to the rule's log file and turns a user mistake (bad extract, bad
config, a cohort that cannot support the study) into one clear message and exit status 1,
instead of a traceback.  Programming errors keep their traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable


class StudyError(Exception):
    """The data cannot support the requested analysis (e.g. an empty arm)."""


def user_errors() -> tuple[type[Exception], ...]:
    from hdank.codelists import CodeListError
    from hdank.ingest import ContractError
    from hdank.propensity import PropensityModelError
    from hdank.settings import ConfigError

    return (ContractError, ConfigError, CodeListError, PropensityModelError, StudyError)


def run(snakemake, fn: Callable, **kwargs) -> None:
    """Call ``fn(**kwargs)`` with logging to the rule's log; exit 1 on a user error."""
    log_path = snakemake.log[0] if snakemake.log else None
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        fn(**kwargs)
    except user_errors() as error:
        logging.getLogger(fn.__module__).error("%s", error)
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(1)
