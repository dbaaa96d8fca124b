"""environment.yml mirrors pyproject.toml's dependencies."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def norm(req: str) -> tuple[str, str]:
    req = req.split(";")[0].strip()
    m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", req)
    assert m, req
    return m.group(1).lower().replace("_", "-"), m.group(3).replace(" ", "")


def test_environment_yml_mirrors_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted: dict[str, str] = {}
    for req in py["dependencies"] + [
        r for extra in py["optional-dependencies"].values() for r in extra
    ]:
        name, spec = norm(req)
        wanted[name] = spec
    conda: dict[str, str] = {}
    text = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("- ") and not line.endswith(":"):
            name, spec = norm(line[2:])
            conda[name] = spec
    for name, spec in wanted.items():
        assert name in conda, f"{name} is in pyproject.toml but not environment.yml"
        assert conda[name] == spec, f"{name}: pyproject {spec!r} != environment.yml {conda[name]!r}"
    assert conda["distributed"] == wanted["dask"]  # dask[distributed] on PyPI
    # moto[server]'s server needs flask and flask-cors, separate packages on conda
    extra = set(conda) - set(wanted) - {"python", "pip", "distributed", "flask", "flask-cors"}
    assert not extra, f"environment.yml has packages pyproject.toml lacks: {extra}"
