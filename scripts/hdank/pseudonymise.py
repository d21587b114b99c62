"""Keyed pseudonyms for patient and admission identifiers.

With ``privacy.pseudonymise_ids: true``, ingest replaces every identifier by a keyed hash
(HMAC-SHA-256, truncated to a positive 63-bit integer) so that typed tables and everything
after them hold no hospital identifier.  The key comes from the environment variable
:data:`ENV_KEY`, never from the config file; only a fingerprint of it (which reveals nothing)
is recorded, so that a new key reruns ingest.  The same key gives the same pseudonyms, so
tables still join and reruns are reproducible.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import numpy as np
import pandas as pd

from hdank.errors import UserError

ENV_KEY = "HDANK_ID_KEY"
MIN_KEY_LENGTH = 16


def key_from_env(environ: dict | None = None) -> bytes:
    """The pseudonymisation key; a clear error if it is missing or too short."""
    value = (environ if environ is not None else os.environ).get(ENV_KEY, "")
    if len(value) < MIN_KEY_LENGTH:
        raise UserError(f"privacy.pseudonymise_ids is on but the environment variable {ENV_KEY} "
                        f"{'is not set' if not value else 'is shorter than 16 characters'}; set it to a "
                        "secret of at least 16 characters (never put it in the config file)")
    return value.encode()


def fingerprint(key: bytes) -> str:
    """A short, non-reversible tag of the key (recorded so that a new key reruns ingest)."""
    return hmac.new(key, b"hdank-key-fingerprint", hashlib.sha256).hexdigest()[:12]


def keyed_ids(ids: pd.Series, key: bytes) -> pd.Series:
    """Replace positive integer ids by keyed 63-bit pseudonyms (nulls stay null)."""
    values = ids.dropna().astype("int64")
    unique = np.unique(values.to_numpy())
    digests = [hmac.new(key, str(int(v)).encode(), hashlib.sha256).digest()[:8] for v in unique]
    mapped = np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64) >> np.uint64(1)
    table = pd.Series(mapped.astype(np.int64) + 1 if len(unique) else [], index=unique, dtype="int64")
    out = ids.map(table)
    return out.astype("int64") if out.notna().all() else out.astype("Int64")
