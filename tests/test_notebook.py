"""notebooks/quickstart.ipynb runs end to end in a real Jupyter kernel, and
is committed without outputs."""

import json

import pytest

from .conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


def test_notebook_uses_only_the_public_api():
    import scaler

    nb = json.loads(NOTEBOOK.read_text())
    src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "from scaler." not in src and "import scaler." not in src
    used = {w.split("(")[0] for w in src.replace("\n", " ").split("scaler.")[1:]}
    assert used <= set(scaler.__all__), used - set(scaler.__all__)


@pytest.mark.slow
def test_notebook_executes(tmp_path, monkeypatch, scheduler_address):
    import nbformat
    from nbclient import NotebookClient

    # the kernel attaches to the session's cluster through DASK_SCHEDULER_ADDRESS
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", scheduler_address)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "scaler.RunResult" in html and "scaler.Model" in html  # _repr_html_
    assert "<progress" in html  # the notebook progress display
    svgs = [o for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert len(svgs) >= 6  # the plots, inline
    assert (tmp_path / "scaler-notebook/output/report/report.html").exists()
