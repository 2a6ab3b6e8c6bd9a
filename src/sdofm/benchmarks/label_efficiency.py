"""Label efficiency: the FM head against models from scratch at 1 … 100 % of the training labels.

The claim behind foundation models for SDO (SDO-FM, Walsh et al. 2024; Surya, Roy et al. 2025;
masked autoencoders in general, He et al. 2022) is that a head on pretrained embeddings needs
far fewer labels than a model trained from scratch. Measured here on the virtual-EVE target
(MEGS-A lines from AIA), where it must beat a strong classical model, not only a weak network:

- ``fm_head`` and its random-init control: the virtual-EVE head on the frozen embedding;
- ``ridge_channel_stats``: ridge regression from log10 of each channel's mean and standard
  deviation (penalty chosen on validation) — few parameters, so it needs few labels;
- ``cnn_from_scratch``: a CNN on the normalised AIA images;
- ``climatology``: the labelled rows' mean;
- ``oracle`` (synthetic Sun, with ``--truth``): virtual EVE's oracle ceiling, the noise-free
  lines from the generator's ground truth: it needs no labels, so its curve is flat.
At every fraction each seed trains on its own contiguous block of the training period (the
runner's ``label_subset``): k labels from one stretch of time, as labels come in practice.
Only labels are scarce: normalisation statistics and the validation split are the same at every
fraction. The runner scores every fraction like the main (100 %) comparison, into ``curves``.
"""

from __future__ import annotations

import numpy as np
import torch

from sdofm.benchmarks.baselines import climatology_arm, cnn_arm, ridge_arm
from sdofm.benchmarks.runner import Arm, Samples, Task
from sdofm.benchmarks.virtual_eve import VirtualEVE

__all__ = ["LabelEfficiency"]


class LabelEfficiency(VirtualEVE):
    name = "label_efficiency"
    title = "Label efficiency: the FM head vs models from scratch, 1-100 % of the labels"
    description = (
        "EVE MEGS-A lines from AIA trained on a fraction of the training labels (contiguous "
        "blocks of time); relative absolute error per line (%) on the test split, median over "
        "lines, at every fraction"
    )
    published_anchor = None

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(self.params["fractions_percent"])

    def samples(self) -> Samples:
        samples = super().samples()
        samples.split[samples.split == "extra"] = "none"  # no virtual instrument here
        return samples

    def arms(self, samples: Samples) -> dict[str, Arm]:
        stats, images = self.images
        log_stats = np.log10(np.clip(stats, 1e-3, None))
        p = self.params
        cnn = cnn_arm(
            torch.from_numpy(images), width=p["cnn_width"], epochs=p["cnn_epochs"], patience=10
        )
        arms = {
            "ridge_channel_stats": Arm(
                "paper",
                "ridge on log10 of each AIA channel's mean and std (alpha chosen on validation)",
                ridge_arm(log_stats, log=True),
                seeded=False,
            ),
            "cnn_from_scratch": Arm("paper", "a CNN on the normalised AIA images", cnn),
            "climatology": Arm(
                "trivial", "mean of the labelled rows", climatology_arm, seeded=False
            ),
        }
        truth = self.ctx.inputs.truth_file("aia_disk_mean.csv")
        if truth is not None:
            what = "virtual EVE's oracle: the noise-free lines (synthetic ground truth, no labels)"
            arms["oracle"] = Arm("oracle", what, self._oracle(truth, samples), False, False)
        return arms

    def extra(self, samples, preds) -> dict:
        return {}  # the runner adds the curves

    def figures(self, samples, preds):
        return Task.figures(self, samples, preds)
