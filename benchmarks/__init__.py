"""Benchmarks for scaler: a single-process pandas + scikit-learn + XGBoost
baseline against the scaler pipeline on a LocalCluster, in the same run.

Run ``python -m benchmarks.run --rows 2000000`` (or ``make bench``); see
``BENCHMARKS.md`` at the repository root for the latest tables.
"""
