"""Bundles: verified on load, refused when missing, extra or altered files."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import scaler
from scaler.bundle import MANIFEST, load_bundle, save_bundle
from scaler.errors import BundleError

from .conftest import base_config


@pytest.fixture(scope="module")
def trained(client, clean_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bundle_run"))
    result = scaler.run(base_config(clean_data, out, model={"rounds": 5}), client=client)
    return result


@pytest.fixture
def bundle_copy(trained, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(trained.bundle_url, dst)
    return dst


def version_dir(path):
    return path / json.loads((path / MANIFEST).read_text())["version_dir"]


def test_layout_and_hashes(bundle_copy):
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    vdir = version_dir(bundle_copy)
    assert set(manifest["files"]) == {p.name for p in vdir.iterdir()}
    assert {
        "booster.ubj",
        "preprocess.json",
        "preprocess_mean.npy",
        "preprocess_components.npy",
    } <= set(manifest["files"])
    assert not [p for p in vdir.iterdir() if p.suffix in (".pkl", ".pickle", ".joblib")]
    for name in manifest["files"]:
        if name.endswith(".npy"):
            np.load(vdir / name, allow_pickle=False)  # plain arrays, no pickle
    assert manifest["task"] == "binary" and manifest["target"] == "label"
    assert load_bundle(str(bundle_copy)).task == "binary"


def test_altered_booster_is_refused(bundle_copy):
    f = version_dir(bundle_copy) / "booster.ubj"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="booster.ubj.*altered"):
        load_bundle(str(bundle_copy))


def test_extra_pickle_file_is_refused(bundle_copy):
    (version_dir(bundle_copy) / "model.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(BundleError, match=r"model\.pkl"):
        load_bundle(str(bundle_copy))
    os.remove(version_dir(bundle_copy) / "model.pkl")
    (bundle_copy / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(BundleError, match=r"extra\.pkl"):
        load_bundle(str(bundle_copy))


def test_missing_file_and_missing_manifest(bundle_copy):
    os.remove(version_dir(bundle_copy) / "preprocess_scale.npy")
    with pytest.raises(BundleError, match="incomplete.*preprocess_scale.npy"):
        load_bundle(str(bundle_copy))
    os.remove(bundle_copy / MANIFEST)
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(str(bundle_copy))


def test_not_a_bundle(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"hello": 1}))
    with pytest.raises(BundleError, match="not a scaler bundle"):
        load_bundle(str(tmp_path))


def test_resave_replaces_version_and_keeps_loading(trained, clean_data, tmp_path):
    url = str(tmp_path / "m")
    save_bundle(trained.model, url)
    first = json.loads((tmp_path / "m" / MANIFEST).read_text())["version_dir"]
    save_bundle(trained.model, url)
    second = json.loads((tmp_path / "m" / MANIFEST).read_text())["version_dir"]
    assert first != second
    assert [p.name for p in (tmp_path / "m").iterdir() if p.is_dir()] == [second]
    raw = pd.read_parquet(clean_data)
    pd.testing.assert_frame_equal(load_bundle(url).predict(raw), trained.model.predict(raw))


def test_orphan_version_from_a_crashed_save_is_ignored(bundle_copy, clean_data, trained):
    (bundle_copy / "v-crashed").mkdir()
    (bundle_copy / "v-crashed" / "booster.ubj").write_bytes(b"partial")
    model = load_bundle(str(bundle_copy))
    raw = pd.read_parquet(clean_data).head(100)
    pd.testing.assert_frame_equal(model.predict(raw), trained.model.predict(raw))


def test_memory_store_round_trip(trained, clean_data):
    url = "memory://bundles/m1"
    save_bundle(trained.model, url)
    raw = pd.read_parquet(clean_data).head(200)
    pd.testing.assert_frame_equal(load_bundle(url).predict(raw), trained.model.predict(raw))


def test_secrets_never_reach_the_manifest(trained, tmp_path):
    model = trained.model
    model.info = dict(
        model.info,
        config={"data": {"storage_options": {"secret": "TOPSECRET-123", "key": "AKIA-XYZ"}}},
    )
    save_bundle(model, str(tmp_path / "m"))
    text = (tmp_path / "m" / MANIFEST).read_text()
    assert "TOPSECRET-123" not in text and "AKIA-XYZ" not in text
