"""Hyper-parameters of PST's parameterisation of one sparsified matrix."""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class PSTConfig:
    """Ranks and scalars of PST (Li et al., IJCAI 2022), defaults as in the paper's code.

    Attributes:
      weight_rank: ``r_w``, rank of the weight update ``U @ V``.
      mask_rank: ``r_m``, rank of the low-rank importance ``A @ B``.
      beta: scale of the weight update: ``W~ = W0 + beta * U @ V``.
      alpha1: scale of the low-rank importance ``A @ B``.
      alpha2: scale of the structured importance ``C[:, None] + R[None, :]``.
      weight_init_std: standard deviation of ``V``, the random factor of the weight update (``U`` starts at
        zero). ``None`` (the default) is ``1 / sqrt(weight_rank)``: under Adam every entry of ``U`` moves by
        about the learning rate per step, so ``U @ V`` then moves each entry of ``W~`` by about the learning
        rate whatever the rank, as dense fine-tuning does. The authors' code uses 1.0, which moves ``W~``
        ``sqrt(weight_rank)`` times faster: at the top of the paper's learning-rate range (5e-4) the update
        outgrows ``W0`` within the dense warm-up and training collapses (README, "Learning rate"). ``B``, the
        importance's random factor, is standard normal as in the authors' code.

    Example:
      >>> PSTConfig(weight_rank=4).mask_rank
      8
      >>> PSTConfig(weight_rank=4).v_std, PSTConfig(weight_init_std=1.0).v_std
      (0.5, 1.0)
    """

    weight_rank: int = 8
    mask_rank: int = 8
    beta: float = 1.0
    alpha1: float = 1.0
    alpha2: float = 1.0
    weight_init_std: float | None = None

    def __post_init__(self):
        for name in ("weight_rank", "mask_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PSTConfig.{name} must be a positive integer, got {value!r}")
        std = self.weight_init_std
        if std is not None and not (isinstance(std, int | float) and math.isfinite(std) and std > 0):
            raise ValueError(f"PSTConfig.weight_init_std must be a positive number or None, got {std!r}")

    @property
    def v_std(self) -> float:
        """The initial standard deviation of ``V``: ``weight_init_std``, or ``1 / sqrt(weight_rank)``."""
        return 1.0 / math.sqrt(self.weight_rank) if self.weight_init_std is None else self.weight_init_std
