"""Settings of the dynamic-network benchmark and the dataset they name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from vj_dynamic.bench.datasets import DatasetSplits, load_digits_upsampled, load_face_crops
from vj_dynamic.bench.graded_digits import load_graded_digits

__all__ = ["DATASETS", "BenchmarkConfig", "Log", "load_dataset", "with_overrides"]

#: Receives progress lines.
Log = Callable[[str], None]

DATASETS = ("graded", "digits", "faces")


@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark run (defaults: the full run, about 3 minutes of CPU time).

    Attributes
    ----------
    dataset : {"graded", "digits", "faces"}
        Digits at four corruption levels (:mod:`~vj_dynamic.bench.graded_digits`), the
        plain digits upsampled, or face / non-face crops from the shared data.
    data_dir : str or None
        Shared data folder for ``"faces"`` (default: ``$VJ_DATA`` or ``../shared/data``).
    image_size : int
        Side of the network inputs.
    depth, gate : int, str
        SkipNet depth (``6n + 2``) and gate kind.
    gate_norm : bool
        Standardise the recurrent gate's inputs (needed for input-dependent policies).
    dense_epochs, sp_epochs, rl_epochs, ft_epochs : int
        Epochs of dense training, supervised gate pre-training (0: none), hybrid RL and
        fine-tuning of the body on the learned policy (0: none).
    alpha : float
        RL price of computation (reward for skipping every gated block).
    explore, baseline, loss_margin : float, str, float
        Exploration, reward baseline and loss margin of the hybrid RL
        (:func:`~vj_dynamic.skipnet_rl.train_hybrid_rl`).
    gate_thresholds : tuple of float
        Gate thresholds tried on the validation split; the cheapest whose accuracy is at
        least the dense network's minus ``gate_accuracy_drop`` is kept.
    gate_accuracy_drop : float
        See ``gate_thresholds``.
    batch_sizes : tuple of int
        Batch sizes of the main table.
    timed_samples, timed_samples_batch1 : int
        Test samples pushed through each timed variant per repeat, at batch sizes > 1
        (whole batches only) and at batch size 1; their FLOPs are counted with
        ``FlopCounterMode``.
    warmup, repeats : int
        Untimed and timed rounds of each latency comparison of the main table.
    sweep_thresholds, sweep_batch_sizes, sweep_threads : tuple
        The systems sweep: these gate thresholds x batch sizes x thread counts, each
        timed against the dense network in the same rounds. Empty
        ``sweep_batch_sizes``: no sweep.
    sweep_repeats : int
        Timed rounds of each sweep point.
    eps : float
        Relative accuracy loss against the dense ResNet the IDK tuning may accept
        (0.005: about half a point).
    idk_z : float
        Safety margin of the IDK threshold tuning, in standard errors of the paired
        accuracy difference (see :func:`~vj_dynamic.idk_tuning.tune_thresholds`).
    idk_min_share : float
        Least share of its inputs every kept IDK stage must answer; stages that would
        answer fewer are dropped (:func:`~vj_dynamic.idk_selection.select_stages`).
    cnn_epochs, cnn_widths : int, tuple of int
        Epochs and channel widths of the small CNN stage.
    train_threads, timing_threads : int
        PyTorch threads for training and for timing. One thread by default: on a
        shared 2-core machine a second thread mostly waits for a core, and an operator
        whose thread is descheduled stalls the whole step.
    seed : int
        Seed of data split, initialisation and training.
    subset : int or None
        Keep only this many samples of each split (smoke tests).
    """

    dataset: str = "graded"
    data_dir: str | None = None
    image_size: int = 24
    depth: int = 20
    gate: str = "rnn"
    gate_norm: bool = True
    dense_epochs: int = 8
    sp_epochs: int = 0
    rl_epochs: int = 6
    ft_epochs: int = 2
    alpha: float = 0.6
    explore: float = 0.2
    baseline: str = "greedy"
    loss_margin: float = 0.7
    gate_thresholds: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    gate_accuracy_drop: float = 0.0025
    batch_sizes: tuple[int, ...] = (1, 64)
    timed_samples: int = 256
    timed_samples_batch1: int = 64
    warmup: int = 2
    repeats: int = 15
    sweep_thresholds: tuple[float, ...] = (0.05, 0.2, 0.5, 0.8, 0.95)
    sweep_batch_sizes: tuple[int, ...] = (1, 8, 64)
    sweep_threads: tuple[int, ...] = (1, 2)
    sweep_repeats: int = 5
    eps: float = 0.005
    idk_z: float = 1.0
    idk_min_share: float = 0.05
    cnn_epochs: int = 20
    cnn_widths: tuple[int, int] = (16, 32)
    train_threads: int = 1
    timing_threads: int = 1
    seed: int = 0
    subset: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        sizes = self.batch_sizes + self.sweep_batch_sizes
        if not self.batch_sizes or min(sizes) < 1:
            raise ValueError(f"batch_sizes must be positive, got {self.batch_sizes}")
        if self.timed_samples < max(sizes) or self.timed_samples_batch1 < 1:
            raise ValueError("timed_samples must be at least the largest batch size")
        if self.subset is not None and self.subset < max(sizes):
            raise ValueError("subset must be at least the largest batch size")
        for name in ("gate_thresholds", "sweep_thresholds"):
            values = getattr(self, name)
            if not values or not all(0 < t < 1 for t in values):
                raise ValueError(f"{name} must be thresholds in (0, 1), got {values}")
        if not 0.0 <= self.idk_min_share <= 1.0:
            raise ValueError(f"idk_min_share must be in [0, 1], got {self.idk_min_share}")

    @classmethod
    def quick(cls, **overrides) -> BenchmarkConfig:
        """A smaller, faster run (about a minute of CPU time) for smoke tests."""
        settings = dict(
            dense_epochs=3,
            rl_epochs=2,
            ft_epochs=1,
            timed_samples=128,
            timed_samples_batch1=32,
            warmup=1,
            repeats=3,
            sweep_batch_sizes=(1, 64),
            sweep_threads=(1,),
            sweep_repeats=2,
            cnn_epochs=5,
        )
        settings.update(overrides)
        return cls(**settings)


def load_dataset(config: BenchmarkConfig) -> DatasetSplits:
    """The dataset named by ``config`` (cut to ``config.subset`` samples per split)."""
    if config.dataset == "graded":
        data = load_graded_digits(config.image_size, seed=config.seed)
    elif config.dataset == "digits":
        data = load_digits_upsampled(config.image_size, seed=config.seed)
    else:
        data = load_face_crops(
            config.data_dir, config.image_size, seed=config.seed, max_per_class=2000
        )
    return data if config.subset is None else data.head(config.subset)


def with_overrides(config: BenchmarkConfig, **overrides) -> BenchmarkConfig:
    """``config`` with the given fields replaced (``None`` values are ignored)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
