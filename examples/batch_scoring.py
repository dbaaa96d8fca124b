"""Batch scoring of new data with a saved bundle.

    python examples/batch_scoring.py BUNDLE_URL DATA_URL OUT_URL

scores the Parquet data at DATA_URL on the cluster and writes partitioned
Parquet (key + prediction + probabilities) to OUT_URL. Without arguments it
first trains a small model under ./scaler-scoring, then scores a fresh
dataset with it.
"""

import os
import sys

import pandas as pd

import scaler


def train_demo_bundle(out: str) -> str:
    scaler.make_dataset(f"{out}/train", rows=10_000, n_features=10, files=2, rank=3)
    result = scaler.run(
        {
            "data": {"url": f"{out}/train", "target": "label", "key": "id"},
            "preprocess": {"pca": 4},
            "model": {"rounds": 30},
            "output": {"url": f"{out}/output", "report": False},
        }
    )
    return result.bundle_url


def main(bundle: str | None = None, data: str | None = None, dest: str | None = None) -> None:
    with scaler.connect():
        if bundle is None:
            base = os.path.abspath("scaler-scoring")  # workers resolve paths themselves
            bundle = train_demo_bundle(base)
            data, dest = f"{base}/new", f"{base}/scored"
            # "new" rows: same columns, another seed, no label needed for scoring
            scaler.make_dataset(data, rows=8_000, n_features=10, files=4, rank=3, seed=7)
        res = scaler.predict(bundle, data, dest)  # verified bundle, on the cluster
        print(f"Scored {res.rows:,} rows in {res.seconds:.2f} s -> {res.url}")
        print(pd.read_parquet(dest).head())


if __name__ == "__main__":
    main(*sys.argv[1:4])
