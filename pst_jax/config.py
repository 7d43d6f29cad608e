"""Hyper-parameters of PST's parameterisation of one sparsified matrix."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class PSTConfig:
    """Ranks and scalars of PST (Li et al., IJCAI 2022), defaults as in the paper's code.

    Attributes:
      weight_rank: ``r_w``, rank of the weight update ``U @ V``.
      mask_rank: ``r_m``, rank of the low-rank importance ``A @ B``.
      beta: scale of the weight update: ``W~ = W0 + beta * U @ V``.
      alpha1: scale of the low-rank importance ``A @ B``.
      alpha2: scale of the structured importance ``C[:, None] + R[None, :]``.

    Example:
      >>> PSTConfig(weight_rank=4).mask_rank
      8
    """

    weight_rank: int = 8
    mask_rank: int = 8
    beta: float = 1.0
    alpha1: float = 1.0
    alpha2: float = 1.0

    def __post_init__(self):
        for name in ("weight_rank", "mask_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PSTConfig.{name} must be a positive integer, got {value!r}")
