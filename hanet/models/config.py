"""ModelConfig: everything that defines a DeepLabV3+ (HANet) model, with the
original's flag names (``hanet``, ``hanet_set``, ``hanet_pos``, ``pos_rfactor``,
``pooling``, ``dropout``, ``pos_noise``, ``aux_loss``), checked on creation."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .backbones import TRUNKS, supported_output_strides


@dataclass
class ModelConfig:
    trunk: str = "resnet-101"
    output_stride: int = 8
    num_classes: int = 19
    hanet: list[int] = field(default_factory=lambda: [1, 1, 1, 1, 0])  # sites 0..4 on/off
    hanet_set: list[int] = field(default_factory=lambda: [3, 64, 3])  # kernel, r, layers
    hanet_pos: list[int] = field(default_factory=lambda: [2, 1])  # injection 1|2|0 (none), encoding 1 sin|0 learned
    pos_rfactor: int = 8  # HANet pools to 128 // pos_rfactor rows
    pooling: str = "mean"
    dropout: float = 0.0
    pos_noise: float = 0.0
    aux_loss: bool = False
    backend: str | None = None  # hanet.ops backend (not part of the architecture)
    # training on CUDA: replay each site's small branch from a captured CUDA graph
    # (hanet.models.branch_graph; not part of the architecture either)
    cuda_graph: bool = False

    def __post_init__(self):
        self.hanet = [int(v) for v in self.hanet]
        self.hanet_set = [int(v) for v in self.hanet_set]
        self.hanet_pos = [int(v) for v in self.hanet_pos]
        self.validate()

    def validate(self) -> None:
        if self.trunk not in TRUNKS:
            raise ValueError(f"unknown trunk {self.trunk!r}; choose one of {', '.join(TRUNKS)}")
        if self.output_stride not in supported_output_strides(self.trunk):
            raise ValueError(
                f"trunk {self.trunk!r} supports output strides "
                f"{supported_output_strides(self.trunk)}, got {self.output_stride}"
            )
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        if len(self.hanet) != 5 or any(v not in (0, 1) for v in self.hanet):
            raise ValueError(f"hanet must be five 0/1 flags (one per site), got {self.hanet}")
        if len(self.hanet_set) != 3:
            raise ValueError(
                f"hanet_set must be [kernel_size, r_factor, layers] (the best recipe: [3, 64, 3]), got {self.hanet_set}"
            )
        if len(self.hanet_pos) != 2 or self.hanet_pos[0] not in (0, 1, 2) or self.hanet_pos[1] not in (0, 1):
            raise ValueError(
                f"hanet_pos must be [injection 1|2 (0: no positional term), encoding 1 (sinusoid)|0 (learned)], "
                f"got {self.hanet_pos}"
            )
        if not 1 <= self.pos_rfactor <= 128:
            raise ValueError(f"pos_rfactor must be in [1, 128] (HANet pools to 128 // pos_rfactor rows), got {self.pos_rfactor}")
        if not isinstance(self.cuda_graph, bool):
            raise ValueError(f"cuda_graph must be true or false, got {self.cuda_graph!r}")
        if self.pooling not in ("mean", "max"):
            raise ValueError(f'pooling must be "mean" or "max", got {self.pooling!r}')

    @property
    def pos_encoding(self) -> str:
        return "sinusoid" if self.hanet_pos[1] == 1 else "learned"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**d)
