"""Settings of the dynamic-network benchmark and the dataset they name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from vj_dynamic.bench.datasets import DatasetSplits, load_digits_upsampled, load_face_crops

__all__ = ["BenchmarkConfig", "Log", "load_dataset", "with_overrides"]

#: Receives progress lines.
Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark run (defaults: the full run, about 4 minutes on 2 cores).

    Attributes
    ----------
    dataset : {"digits", "faces"}
        scikit-learn digits upsampled, or face / non-face crops from the shared data.
    data_dir : str or None
        Shared data folder for ``"faces"`` (default: ``$VJ_DATA`` or ``../shared/data``).
    image_size : int
        Side of the network inputs.
    depth, gate : int, str
        SkipNet depth (``6n + 2``) and gate kind.
    dense_epochs, sp_epochs, rl_epochs : int
        Epochs of dense training, supervised gate pre-training and hybrid RL.
    alpha : float
        RL price of computation.
    batch_sizes : tuple of int
        Batch sizes measured.
    timed_samples : int
        Test samples pushed through each timed variant per repeat at batch sizes > 1
        (whole batches only); their FLOPs are counted with ``FlopCounterMode``.
    timed_samples_batch1 : int
        The same at batch size 1 (the counter costs ~0.1 s per call there).
    warmup, repeats : int
        Untimed and timed rounds of each latency comparison.
    eps : float
        Relative accuracy loss the IDK threshold tuning may accept.
    idk_z : float
        Safety margin of the IDK threshold tuning, in standard errors (see
        :func:`~vj_dynamic.idk_tuning.tune_thresholds`); guards the test accuracy against
        thresholds that exploit a few lucky answers of the small validation set.
    cnn_epochs : int
        Epochs of the small CNN stage.
    train_threads, timing_threads : int
        PyTorch threads for training and for timing. One thread by default: on a
        shared 2-core machine a second thread mostly waits for a core, and an operator
        whose thread is descheduled stalls the whole step.
    seed : int
        Seed of data split, initialisation and training.
    subset : int or None
        Keep only this many samples of each split (smoke tests).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int = 32
    depth: int = 38
    gate: str = "rnn"
    dense_epochs: int = 8
    sp_epochs: int = 1
    rl_epochs: int = 3
    alpha: float = 0.5
    batch_sizes: tuple[int, ...] = (1, 64)
    timed_samples: int = 192
    timed_samples_batch1: int = 64
    warmup: int = 2
    repeats: int = 9
    eps: float = 0.0
    idk_z: float = 1.645
    cnn_epochs: int = 15
    train_threads: int = 1
    timing_threads: int = 1
    seed: int = 0
    subset: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in ("digits", "faces"):
            raise ValueError(f"dataset must be 'digits' or 'faces', got {self.dataset!r}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes must be positive, got {self.batch_sizes}")
        if self.timed_samples < max(self.batch_sizes) or self.timed_samples_batch1 < 1:
            raise ValueError("timed_samples must be at least the largest batch size")
        if self.subset is not None and self.subset < max(self.batch_sizes):
            raise ValueError("subset must be at least the largest batch size")

    @classmethod
    def quick(cls, **overrides) -> BenchmarkConfig:
        """A smaller, faster run (about a minute) for smoke tests."""
        settings = dict(
            dense_epochs=3,
            sp_epochs=1,
            rl_epochs=2,
            timed_samples=64,
            warmup=1,
            repeats=3,
            cnn_epochs=5,
        )
        settings.update(overrides)
        return cls(**settings)


def load_dataset(config: BenchmarkConfig) -> DatasetSplits:
    """The dataset named by ``config`` (cut to ``config.subset`` samples per split)."""
    if config.dataset == "digits":
        data = load_digits_upsampled(config.image_size, seed=config.seed)
    else:
        data = load_face_crops(
            config.data_dir, config.image_size, seed=config.seed, max_per_class=2000
        )
    if config.subset is None:
        return data
    cut = slice(0, config.subset)
    return replace(
        data,
        x_train=data.x_train[cut],
        y_train=data.y_train[cut],
        x_val=data.x_val[cut],
        y_val=data.y_val[cut],
        x_test=data.x_test[cut],
        y_test=data.y_test[cut],
    )


def with_overrides(config: BenchmarkConfig, **overrides) -> BenchmarkConfig:
    """``config`` with the given fields replaced (``None`` values are ignored)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
