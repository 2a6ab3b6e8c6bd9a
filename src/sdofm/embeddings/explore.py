"""Looking into an embedding space: nearest times to a time, and a 2-D map coloured by activity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sdofm import SdofmError
from sdofm.dataset.loader import open_dataset
from sdofm.embeddings.extract import open_embeddings
from sdofm.io import atomic_output

__all__ = ["activity_index", "embedding_map", "similar_times"]


def _usable(emb: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    z = emb.embedding.values
    ok = np.isfinite(z).all(axis=1)
    return z, ok


def similar_times(
    embeddings: str | Path, time: str, *, k: int = 5, exclude_hours: float = 24.0
) -> pd.DataFrame:
    """The ``k`` time steps whose embeddings are closest (cosine) to the one nearest ``time``.

    Embeddings are centred on the training rows' mean first: every embedding shares a large
    common part, which would make all cosine distances tiny and alike. Steps within
    ``exclude_hours`` of the query are left out: neighbouring frames are always similar, and
    the interesting answers are other days with a Sun like this one.
    Returns columns time, cosine_distance, split; the query step is in ``attrs["query"]``.
    """
    emb = open_embeddings(embeddings)
    z, ok = _usable(emb)
    if not ok.any():
        msg = f"{embeddings} has no embedded time step"
        raise SdofmError(msg)
    times = pd.DatetimeIndex(emb.time.values)
    target = pd.Timestamp(time)
    usable = np.flatnonzero(ok)
    q = usable[np.argmin(np.abs(times[usable] - target))]
    if abs(times[q] - target) > pd.Timedelta(days=1):
        msg = f"no embedded time step within a day of {target} (nearest is {times[q]})"
        raise SdofmError(msg)
    from sklearn.neighbors import NearestNeighbors

    train = ok & (emb.split.values == "train")
    zc = z - z[train if train.any() else ok].mean(axis=0)
    far = usable[np.abs(times[usable] - times[q]) > pd.Timedelta(hours=exclude_hours)]
    dist, found = np.empty(0), np.empty(0, int)
    if len(far) and k > 0:
        nn = NearestNeighbors(metric="cosine", algorithm="brute").fit(zc[far])
        dist, i = nn.kneighbors(zc[q][None], n_neighbors=min(k, len(far)))
        dist, found = dist[0], far[i[0]]
    out = pd.DataFrame(
        {
            "time": times[found],
            "cosine_distance": dist,
            "split": emb.split.values[found],
        }
    )
    out.attrs["query"] = str(times[q])
    return out


def activity_index(ds: xr.Dataset) -> tuple[np.ndarray, str]:
    """A per-time activity measure from the images: mean |Bz| or |Blos| (G) if there is HMI,
    else the mean of the hottest AIA channel present."""
    channels = [str(c) for c in ds.channel.values]
    field = next((c for c in ("Bz", "Blos") if c in channels), None)
    name = field or channels[0]
    img = ds.images.sel(channel=name)
    value = abs(img).mean(dim=("y", "x")) if field else img.mean(dim=("y", "x"))
    label = f"mean |{name}| (G)" if field else f"mean {name} (DN/s)"
    return value.values.astype(np.float64), label


def embedding_map(
    embeddings: str | Path, dataset: str | Path, out_png: str | Path, out_csv: str | Path
) -> dict[str, float]:
    """Project the embeddings on their first two principal components (fitted on the training
    rows) and plot them coloured by activity, one marker per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    emb = open_embeddings(embeddings)
    z, ok = _usable(emb)
    split = emb.split.values.astype(str)
    train = ok & (split == "train")
    if train.sum() < 3:
        msg = f"{embeddings} has fewer than 3 embedded training steps: nothing to map"
        raise SdofmError(msg)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="full").fit(z[train])
    xy = pca.transform(z[ok])
    explained = pca.explained_variance_ratio_.tolist()
    activity, label = activity_index(open_dataset(dataset))
    table = pd.DataFrame(
        {
            "time": emb.time.values[ok],
            "split": split[ok],
            "pc1": xy[:, 0],
            "pc2": xy[:, 1],
            "activity": activity[ok],
        }
    )
    fig, ax = plt.subplots(figsize=(6, 5))
    vmin, vmax = np.nanpercentile(table["activity"], [2, 98])
    for name, marker in (("train", "o"), ("val", "s"), ("test", "^"), ("buffer", ".")):
        part = table[table["split"] == name]
        if len(part):
            sc = ax.scatter(
                part["pc1"], part["pc2"], c=part["activity"], marker=marker, s=14,
                cmap="viridis", vmin=vmin, vmax=vmax, label=name,
            )  # fmt: skip
    fig.colorbar(sc, ax=ax, label=label)
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f} % of training variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f} %)")
    ax.set_title(f"embedding space of {emb.attrs.get('backbone', '')}", fontsize=10)
    ax.legend(fontsize=8, markerscale=1.5)
    fig.tight_layout()
    with atomic_output(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    corr = float(np.corrcoef(table["pc1"], table["activity"])[0, 1])
    return {"explained_pc1": explained[0], "explained_pc2": explained[1], "r_pc1_activity": corr}
