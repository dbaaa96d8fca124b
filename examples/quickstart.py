"""Local quickstart: a LocalCluster on 127.0.0.1, a small synthetic dataset,
the whole pipeline, then the saved bundle scoring new rows.

    python examples/quickstart.py [OUT_DIR]      # default ./scaler-quickstart

Attaches to $DASK_SCHEDULER_ADDRESS instead when it is set.
"""

import os
import sys

import scaler

ROWS = 20_000


def main(out: str = "scaler-quickstart") -> None:
    out = os.path.abspath(out)  # workers resolve paths themselves
    with scaler.connect() as client:  # LocalCluster on 127.0.0.1 (or DASK_SCHEDULER_ADDRESS)
        print(f"Dask cluster: {scaler.cluster.describe(client)}")
        scaler.make_dataset(f"{out}/data", rows=ROWS, n_features=20, files=4, rank=5)
        result = scaler.run(
            {
                "data": {"url": f"{out}/data", "target": "label", "key": "id"},
                "preprocess": {"pca": 8},
                "model": {"rounds": 50, "early_stopping": 5, "params": {"max_depth": 4}},
                "output": {"url": f"{out}/output"},
            },
            client=client,
            echo=print,
            progress="plain",
        )
        print(result)

        model = scaler.load_bundle(result.bundle_url)  # verified, no pickle
        new = scaler.read_dataset(f"{out}/data").head(5)  # a pandas frame
        print(model.predict(new))
        print(f"Open {result.report_url} in a browser for the plots.")


if __name__ == "__main__":
    main(*sys.argv[1:2])
