"""Lightning's view of the ML-ready store: train/val loaders whose order resumes exactly.

``ResumableLoader`` shuffles each epoch as a function of (seed, epoch) and shards it by rank
itself (so DDP needs no ``DistributedSampler``), and can start mid-epoch after a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numcodecs
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sdofm import SdofmError
from sdofm.dataset.loader import SDOImages, SDOStacks, collate

__all__ = ["ResumableLoader", "SDODataModule"]


class _EpochSampler(Sampler[int]):
    """Each epoch's order comes from (seed, epoch) alone, and an epoch can start part-way.

    That is what makes a resumed run see exactly the samples, in exactly the order, that the
    uninterrupted run would have seen after its checkpoint. Under DDP each of ``world`` ranks
    takes every ``world``-th sample of that order, starting at its ``rank`` (the order is padded
    with its own first samples to a multiple of ``world``, as torch's ``DistributedSampler``
    does), so a rank's shard is a function of (seed, epoch, rank) and every rank has as many
    batches as the others.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            msg = f"rank {rank} is not one of the {world} ranks"
            raise SdofmError(msg)
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world = rank, world
        self.epoch, self.skip = 0, 0

    def __len__(self) -> int:  # a whole epoch of this rank, also when one resumes part-way
        return -(-self.n // self.world)

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's samples of ``epoch``, in training order."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        padded = torch.cat([order, order[: len(self) * self.world - self.n]])
        return padded[self.rank :: self.world]

    def __iter__(self):
        order = self.order(self.epoch)
        start, self.skip = self.skip, 0
        self.epoch += 1
        yield from order[start:].tolist()


class ResumableLoader(DataLoader):
    """A ``DataLoader`` whose position (epoch, batches done) is part of a Lightning checkpoint.

    Lightning saves ``state_dict()`` with every checkpoint and hands it back on resume; the
    training module reports how many batches of the epoch it has trained on (``batches_done``),
    because Lightning fetches a batch ahead of the one it is training on. Under DDP it is
    built with the process's ``rank`` and the ``world`` size and shards the data itself (the
    Trainer must not replace its sampler: ``use_distributed_sampler=False``); every rank is at
    the same position, so rank 0's saved state resumes them all.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        seed: int,
        shuffle: bool,
        rank: int = 0,
        world: int = 1,
        **kwargs: Any,
    ):
        self.epoch_sampler = _EpochSampler(
            len(dataset), shuffle=shuffle, seed=seed, rank=rank, world=world
        )
        # Its own generator: starting an iterator draws a worker seed, which must not come
        # from (and shift) the global RNG that the masks are drawn from.
        gen = torch.Generator().manual_seed(seed)
        super().__init__(dataset, sampler=self.epoch_sampler, generator=gen, **kwargs)
        self.batches_done = 0

    def __iter__(self):
        self.batches_done = self.epoch_sampler.skip // self.batch_size  # 0 unless resuming
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        """The epoch being trained and how many of its batches are done."""
        return {"epoch": self.epoch_sampler.epoch - 1, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        skip = state["batches_done"] * self.batch_size
        if skip >= len(self.epoch_sampler):  # saved at the end of an epoch: start the next one
            self.epoch_sampler.epoch, self.epoch_sampler.skip = state["epoch"] + 1, 0
        else:
            self.epoch_sampler.epoch, self.epoch_sampler.skip = state["epoch"], skip


def _worker_init(worker_id: int) -> None:
    """One Blosc thread per worker: the workers are the parallelism."""
    numcodecs.blosc.set_nthreads(1)


class SDODataModule(L.LightningDataModule):
    """Train/val loaders over the ML-ready store.

    ``normalise_on="device"`` (the default) moves physical values and normalises each batch
    after it reached the accelerator (``on_after_batch_transfer``); ``"loader"`` normalises in
    the loader processes instead (e.g. for a consumer outside Lightning). ``frames`` > 1 gives
    temporal stacks (B, C, T, H, W) of frames ``spacing`` steps apart. The training order is
    a function of ``seed`` and the epoch, and resumes exactly from a checkpoint.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 16,
        num_workers: int = 0,
        prefetch_factor: int = 2,
        mask_off_disk: bool = False,
        normalise_on: str = "device",
        frames: int = 1,
        spacing: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        if normalise_on not in ("device", "loader"):
            msg = f"normalise_on must be 'device' or 'loader', not {normalise_on!r}"
            raise SdofmError(msg)
        self.path, self.batch_size, self.num_workers = str(path), batch_size, num_workers
        self.prefetch_factor, self.mask_off_disk = prefetch_factor, mask_off_disk
        self.on_device = normalise_on == "device"
        self.frames, self.spacing, self.seed = frames, spacing, seed

    def _split(self, split: str) -> SDOImages | SDOStacks:
        opts = {"mask_off_disk": self.mask_off_disk, "normalise": not self.on_device}
        if self.frames > 1:
            return SDOStacks(
                self.path, frames=self.frames, spacing=self.spacing, split=split, **opts
            )
        return SDOImages.split(self.path, split, **opts)

    def setup(self, stage: str | None = None) -> None:
        self.train_set, self.val_set = self._split("train"), self._split("val")
        mask = self.train_set.mask
        self._mask = torch.from_numpy(mask) if mask is not None else None
        if len(self.train_set) == 0:
            what = f"{self.frames}-frame stacks" if self.frames > 1 else "samples"
            msg = f"the training split of {self.path} has no {what}: widen data.start/end"
            raise SdofmError(msg + " or shrink the val/test splits")

    def _loader(self, data: Dataset, shuffle: bool) -> DataLoader:
        workers = self.num_workers > 0
        trainer = self.trainer  # under DDP each rank trains on its own shard of every epoch
        return ResumableLoader(
            data,
            seed=self.seed,
            shuffle=shuffle,
            rank=trainer.global_rank if trainer else 0,
            world=trainer.world_size if trainer else 1,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=self.prefetch_factor if workers else None,
            persistent_workers=workers,
            collate_fn=collate,
            worker_init_fn=_worker_init if workers else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if not len(self.val_set):
            return []
        return DataLoader(
            self.val_set,
            generator=torch.Generator().manual_seed(self.seed),  # leaves the global RNG alone
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate,
            worker_init_fn=_worker_init if self.num_workers else None,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise the physical batch where it now is (the accelerator, in training)."""
        if not self.on_device:
            return batch
        x, rows = batch
        return self.train_set.norm.torch(x, self._mask), rows
