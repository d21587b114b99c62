"""hdank: library of the HD-ANK vs SOC target-trial pipeline.

Each module is one stage or one tool of a stage; functions are pure (DataFrame in,
DataFrame out) except those in :mod:`hdank.io`, which do all file writing.
"""
