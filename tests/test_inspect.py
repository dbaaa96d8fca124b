"""``scaler inspect``: facts from Parquet footers only."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd

from scaler.cli import main
from scaler.inspect import inspect_dataset


def test_inspect_reads_only_footers(s3, client, capsys):
    so = s3.storage_options
    prefix = f"inspect-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "month": np.repeat([1, 2, 3], 20_000),
            "region": np.tile(["north", "south"], 30_000),
            **{f"x{i}": rng.normal(size=60_000) for i in range(10)},
        }
    )
    df.to_parquet(
        f"s3://scaler-data/{prefix}",
        partition_cols=["month", "region"],
        index=False,
        storage_options=so,
    )
    s3.recorder.reset()
    info = inspect_dataset(f"s3://scaler-data/{prefix}", so)
    read = s3.recorder.data_bytes("scaler-data", prefix)
    assert len(info.files) == 6 and info.rows == 60_000
    assert info.partitions == {"month": ["1", "2", "3"], "region": ["north", "south"]}
    assert [n for n, _ in info.schema] == [f"x{i}" for i in range(10)]
    assert info.schema[0][1] == "double"
    assert info.suggestion and "100 MB-1 GB" in info.suggestion
    with capsys.disabled():
        print(f"\n[inspect] read {read:,} B of {info.size:,} B of files")
    assert read < 0.1 * info.size

    code = main(["inspect", f"s3://scaler-data/{prefix}", "--storage-options", json.dumps(so)])
    out = capsys.readouterr().out
    assert code == 0
    assert "rows: 60,000" in out and "month: 3 value(s): 1, 2, 3" in out
    assert "x9: double" in out and "Suggestion:" in out
    assert so["secret"] not in out

    assert (
        main(
            ["inspect", f"s3://scaler-data/{prefix}", "--json", "--storage-options", json.dumps(so)]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["rows"] == 60_000


def test_inspect_missing_url_exits_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
