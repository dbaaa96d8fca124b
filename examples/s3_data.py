"""Reading from (and writing to) S3 with ``storage_options``.

    SCALER_S3_ENDPOINT=http://127.0.0.1:5555 python examples/s3_data.py

The endpoint comes from $SCALER_S3_ENDPOINT (default: a local test endpoint
on 127.0.0.1:5555, e.g. `moto_server -p 5555`; leave it empty for AWS
itself), the credentials from the usual $AWS_ACCESS_KEY_ID /
$AWS_SECRET_ACCESS_KEY, the bucket from $SCALER_S3_BUCKET (default
``scaler-data``, which must exist). ``storage_options`` travel with the
tasks, so the Dask workers need no credentials of their own.
"""

import os

import scaler

ENDPOINT = os.environ.get("SCALER_S3_ENDPOINT", "http://127.0.0.1:5555")
BUCKET = os.environ.get("SCALER_S3_BUCKET", "scaler-data")


def storage_options() -> dict:
    opts: dict = {
        "key": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    }
    if ENDPOINT:
        opts["client_kwargs"] = {"endpoint_url": ENDPOINT}
    return opts


def main() -> None:
    so = storage_options()
    data = f"s3://{BUCKET}/examples/data"
    out = f"s3://{BUCKET}/examples/output"
    with scaler.connect() as client:
        scaler.make_dataset(data, rows=10_000, n_features=10, files=4, rank=3, storage_options=so)
        result = scaler.run(
            {
                "data": {"url": data, "target": "label", "key": "id", "storage_options": so},
                "preprocess": {"pca": 4},
                "model": {"rounds": 30, "early_stopping": 5},
                "output": {"url": out, "storage_options": so},
            },
            client=client,
        )
        print(result.summary())  # secrets in URLs and options are never printed
        model = scaler.load_bundle(result.bundle_url, storage_options=so)
        print(f"Loaded back from S3: {model.task} model with {len(model.feature_names)} features")


if __name__ == "__main__":
    main()
