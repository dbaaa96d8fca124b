import pytest

from scaler.config import RunConfig, redact
from scaler.errors import ConfigError

MINIMAL = {"data": {"url": "data/", "target": "y"}, "output": {"url": "out/"}}


def with_(section, **values):
    cfg = {k: dict(v) for k, v in MINIMAL.items()}
    cfg.setdefault(section, {}).update(values)
    return cfg


def test_defaults():
    cfg = RunConfig.from_dict(MINIMAL)
    assert cfg.model.rounds == 100
    assert cfg.model.objective == "binary:logistic"
    assert cfg.task == "binary"
    assert cfg.split.holdout == 0.2
    assert cfg.preprocess.pca is False
    assert cfg.cluster.address == ""


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(with_("model", round=10))
    msg = str(e.value)
    assert "'round'" in msg and "Did you mean 'rounds'" in msg
    assert "early_stopping" in msg  # lists the valid keys


def test_replaced_key_says_what_replaced_it():
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(with_("model", train_eval_fraction=0.1))
    msg = str(e.value)
    assert "'train_eval_fraction'" in msg and "replaced by 'train_eval_rows'" in msg
    assert RunConfig.from_dict(with_("model", train_eval_rows=0)).model.train_eval_rows == 0


def test_unknown_section():
    cfg = dict(MINIMAL, modle={"rounds": 1})
    with pytest.raises(ConfigError, match="unknown section 'modle'.*Did you mean 'model'"):
        RunConfig.from_dict(cfg)


@pytest.mark.parametrize(
    "section, key, value, match",
    [
        ("model", "rounds", 0, "rounds"),
        ("model", "rounds", -3, "rounds"),
        ("model", "rounds", "ten", "expected an int"),
        ("model", "rounds", 1.5, "expected an int"),
        ("model", "objective", "multi:softmax", "multi:softprob"),
        ("model", "kind", "lightgbm", "kind"),
        ("preprocess", "pca", 0, "pca"),
        ("preprocess", "pca", 1.5, "pca"),
        ("preprocess", "pca", True, "how many components"),
        ("preprocess", "scale", "yes", "true or false"),
        ("split", "holdout", 1.0, "holdout"),
        ("split", "holdout", 0, "holdout"),
        ("data", "filters", [["x", "~", 1]], "operator"),
        ("data", "filters", [["x", "in", 1]], "list"),
        ("data", "features", [], "features"),
        ("data", "features", ["y"], "target"),
        ("cluster", "memory_limit", "lots", "memory_limit"),
        ("cluster", "n_workers", -1, "n_workers"),
        ("cluster", "threads_per_worker", -2, "threads_per_worker"),
        ("model", "params", {"objective": "reg:squarederror"}, "objective"),
        ("model", "train_eval_rows", -1, "train_eval_rows"),
        ("model", "train_eval_rows", 0.1, "expected an int"),
        ("data", "cache_keep_days", -1, "cache_keep_days"),
        ("data", "cache_keep_days", "30d", "expected an int"),
    ],
)
def test_bad_values(section, key, value, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_dict(with_(section, **{key: value}))


def test_early_stopping_needs_validation_rows():
    with pytest.raises(ConfigError, match="valid_fraction"):
        RunConfig.from_dict(with_("model", valid_fraction=0.0))
    cfg = RunConfig.from_dict(with_("model", valid_fraction=0.0, early_stopping=0))
    assert cfg.model.early_stopping == 0


def test_missing_required():
    with pytest.raises(ConfigError, match="data.target"):
        RunConfig.from_dict({"data": {"url": "x"}, "output": {"url": "o"}})
    with pytest.raises(ConfigError, match="output.url"):
        RunConfig.from_dict({"data": {"url": "x", "target": "y"}})


def test_pca_forms():
    assert RunConfig.from_dict(with_("preprocess", pca=20)).preprocess.pca == 20
    assert RunConfig.from_dict(with_("preprocess", pca=0.95)).preprocess.pca == 0.95
    assert RunConfig.from_dict(with_("preprocess", pca=False)).preprocess.pca is False


def test_task_from_objective():
    assert RunConfig.from_dict(with_("model", objective="multi:softprob")).task == "multiclass"
    assert RunConfig.from_dict(with_("model", objective="reg:squarederror")).task == "regression"


def test_toml_relative_urls_resolve_against_file(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('[data]\nurl = "data"\ntarget = "y"\n[output]\nurl = "s3://bucket/out"\n')
    cfg = RunConfig.from_toml(p)
    assert cfg.data.url == str(tmp_path / "data")
    assert cfg.output.url == "s3://bucket/out"


def test_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.from_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nurl=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        RunConfig.from_toml(bad)


def test_replace_rechecks():
    cfg = RunConfig.from_dict(MINIMAL)
    assert cfg.replace(model={"rounds": 7}).model.rounds == 7
    with pytest.raises(ConfigError):
        cfg.replace(model={"rounds": 0})


def test_redact_hides_secrets():
    so = {"key": "AKIA", "secret": "s3cr3t", "client_kwargs": {"endpoint_url": "http://x"}}
    out = redact({"storage_options": so, "url": "https://user:pw@host/data"})
    assert out["storage_options"]["secret"] == "***"
    assert out["storage_options"]["key"] == "***"
    assert redact({"data": {"key": "id"}})["data"]["key"] == "id"
    assert out["storage_options"]["client_kwargs"]["endpoint_url"] == "http://x"
    assert "pw" not in out["url"]
