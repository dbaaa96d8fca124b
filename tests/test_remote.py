"""The pipeline against an existing scheduler reached by address, with real
`dask scheduler` and `dask worker` processes on 127.0.0.1."""

import pandas as pd
import pytest

from . import toml_util
from .conftest import base_config
from .processes import DaskProcesses
from .test_cli import scaler_cli


@pytest.mark.slow
def test_cli_and_api_against_a_remote_scheduler(tmp_path, clean_data):
    import scaler
    from scaler.cluster import connect

    with DaskProcesses(n_workers=2) as procs:
        # CLI: the address from the config file
        cfg = base_config(clean_data, str(tmp_path / "cli"), cluster={"address": procs.address})
        path = tmp_path / "run.toml"
        path.write_text(toml_util.dumps(cfg))
        r = scaler_cli("run", str(path))
        assert r.returncode == 0, r.stderr
        assert "auc=" in r.stdout

        # CLI: the address from DASK_SCHEDULER_ADDRESS
        cfg = base_config(clean_data, str(tmp_path / "env"))
        path.write_text(toml_util.dumps(cfg))
        r = scaler_cli("run", str(path), env={"DASK_SCHEDULER_ADDRESS": procs.address})
        assert r.returncode == 0, r.stderr

        # Python API with an explicit client on that scheduler
        with connect(procs.address) as client:
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2 and all("127.0.0.1" in w for w in workers)
            result = scaler.run(base_config(clean_data, str(tmp_path / "api")), client=client)
        assert result.metrics["auc"] > 0.65
        pred = pd.read_parquet(result.predictions_url)
        assert len(pred) == result.counts["holdout"]
