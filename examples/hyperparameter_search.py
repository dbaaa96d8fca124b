"""Hyper-parameter selection over a small grid with early stopping, reading,
fitting scaling + PCA and transforming the data only once.

    python examples/hyperparameter_search.py [OUT_DIR]

``scaler.prepare`` keeps the transformed features in cluster memory;
``Prepared.train`` trains one booster per candidate on them, with early
stopping on the validation rows. The best candidate (lowest validation
logloss) is then evaluated once on the holdout and saved as a bundle.
"""

import itertools
import os
import sys
import time

import scaler

GRID = {"max_depth": [3, 6], "learning_rate": [0.1, 0.3]}


def main(out: str = "scaler-search") -> None:
    out = os.path.abspath(out)  # workers resolve paths themselves
    with scaler.connect() as client:
        scaler.make_dataset(f"{out}/data", rows=20_000, n_features=20, files=4, rank=5)
        config = {
            "data": {"url": f"{out}/data", "target": "label", "key": "id"},
            "preprocess": {"pca": 8},
            "model": {"rounds": 200, "early_stopping": 10},
            "output": {"url": f"{out}/output"},
        }
        prep = scaler.prepare(config, client=client)  # read + fit + transform, once
        print(
            f"Prepared {prep.counts['train']:,} training rows in {sum(prep.timings.values()):.2f} s"
        )
        candidates = []
        for depth, lr in itertools.product(GRID["max_depth"], GRID["learning_rate"]):
            t0 = time.perf_counter()
            model = prep.train(params={"max_depth": depth, "learning_rate": lr})
            info = model.info
            print(
                f"max_depth={depth} learning_rate={lr}: valid {info['valid_metric']}="
                f"{info['best_score']:.4f} at round {info['best_iteration'] + 1} "
                f"({time.perf_counter() - t0:.2f} s)"
            )
            candidates.append(model)
        best = min(candidates, key=lambda m: m.info["best_score"])  # logloss: lower is better
        metrics = prep.evaluate(best)  # the holdout, used once
        print(f"Best: {best.info['params']['max_depth']=} {best.info['params']['learning_rate']=}")
        print("Holdout:", {k: round(v, 4) for k, v in metrics.items()})
        scaler.save_bundle(best, f"{out}/best-model")
        prep.release()


if __name__ == "__main__":
    main(*sys.argv[1:2])
