"""The one helper that Snakemake adapters (``scripts/<rule>.py``) call.

It sends log output to the rule's log file and turns a user mistake (any
:class:`hdank.errors.UserError`: bad extract, bad config, a cohort that cannot support the
study) into one clear message and exit status 1, instead of a traceback.  Programming errors
keep their traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from hdank.errors import UserError


def run(snakemake, fn: Callable, **kwargs) -> None:
    """Call ``fn(**kwargs)`` with logging to the rule's log; exit 1 on a user error."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        fn(**kwargs)
    except UserError as error:
        logging.getLogger(fn.__module__).error("%s", error)
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(1)
