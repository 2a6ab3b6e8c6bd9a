"""Embeddings of every backbone family, nearest times, and the embedding map."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sdofm import SdofmError
from sdofm.cli import main
from sdofm.dataset.loader import open_dataset, temporal_index
from sdofm.embeddings.explore import embedding_map, similar_times
from sdofm.embeddings.extract import extract_embeddings, open_embeddings
from sdofm.models.checkpoint import load_backbone
from sdofm.training.pretrain import pretrain


@pytest.fixture(scope="module", params=["tmae_tiny", "vae_tiny"])
def other_backbone(request, tmp_path_factory, tiny_config, dataset):
    """One epoch of a temporal MAE and of a VAE on the tiny data set, and their embeddings."""
    root = tmp_path_factory.mktemp(request.param)
    params = {**tiny_config["pretrain"], "backbone": request.param, "max_epochs": 1}
    params |= {"frames": 2, "masking": "solar", "probe_every_n_steps": 0}
    summary = pretrain(dataset, root / "model.ckpt", params)
    out = root / "embeddings.zarr"
    info = extract_embeddings(dataset, root / "model.ckpt", out, {"batch_size": 16, "tokens": True})
    return request.param, root, summary, info, out


def test_other_backbones_train_and_embed(other_backbone, dataset):
    """Both train (finite losses), rebuild from their checkpoint and embed every step they can:
    a temporal MAE every step that ends a 2-frame stack of valid frames, a VAE every valid step."""
    name, root, summary, info, out = other_backbone
    assert np.isfinite(summary["final_train_loss"]) and summary["steps"] > 0
    net, hp = load_backbone(root / "model.ckpt")
    assert hp["backbone"] == name and type(net).__name__ in ("TemporalMAE", "ConvVAE")
    ds = open_dataset(dataset)
    emb = open_embeddings(out)
    embedded = np.isfinite(emb.embedding.values).all(axis=1)
    if name.startswith("tmae"):
        assert hp["net_kwargs"]["frames"] == 2 and hp["net_kwargs"]["solar_weight"] > 0
        expected = np.zeros(ds.sizes["time"], bool)
        expected[temporal_index(ds, frames=2, spacing=1, split=None)[:, -1]] = True
    else:
        expected = ds.valid.values
    np.testing.assert_array_equal(embedded, expected)
    assert emb.tokens.shape[:2] == (ds.sizes["time"], net.embed_dim)
    assert info["samples_per_second"] > 0 and emb.attrs["backbone"] == name


def test_similar_times(embeddings):
    """The nearest steps are the closest by cosine distance, sorted, and never the query's day."""
    emb = open_embeddings(embeddings)
    query = str(emb.time.values[40])
    found = similar_times(embeddings, query, k=4)
    assert len(found) == 4 and found.attrs["query"] == str(pd.Timestamp(query))
    assert found["cosine_distance"].is_monotonic_increasing
    assert (abs(found["time"] - pd.Timestamp(query)) > pd.Timedelta(hours=24)).all()
    z = emb.embedding.values
    z = z - z[emb.split.values == "train"].mean(axis=0)  # centred on the training mean
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    d = 1 - unit @ unit[40]
    far = abs(pd.DatetimeIndex(emb.time.values) - pd.Timestamp(query)) > pd.Timedelta(hours=24)
    d[~far | ~np.isfinite(d)] = np.inf
    np.testing.assert_allclose(found["cosine_distance"], np.sort(d)[:4], atol=1e-6)
    with pytest.raises(SdofmError, match="no embedded time step within a day of 2020"):
        similar_times(embeddings, "2020-01-01")


def test_similar_on_the_command_line(embeddings, capsys):
    emb = open_embeddings(embeddings)
    assert (
        main(
            [
                "similar",
                "--embeddings",
                str(embeddings),
                "--time",
                str(emb.time.values[10]),
                "-k",
                "3",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()  # a header and the 3 neighbours
    assert len(out) == 4 and out[0].split() == ["time", "(UTC)", "cosine_distance", "split"], out
    assert json.loads(captured.err.strip().splitlines()[-1])["found"] == 3  # summary: stderr


def test_embedding_map(embeddings, dataset, tmp_path):
    info = embedding_map(embeddings, dataset, tmp_path / "map.png", tmp_path / "map.csv")
    table = pd.read_csv(tmp_path / "map.csv")
    assert len(table) == int(open_dataset(dataset).valid.values.sum())
    assert set(table["split"]) <= {"train", "val", "test", "buffer"}
    assert 0 < info["explained_pc2"] <= info["explained_pc1"] < 1
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
