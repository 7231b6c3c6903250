"""Megatron's "initialization" group: seeds and weight initialization."""

from ..option import UNSUPPORTED, OptionGroup

group = OptionGroup("initialization")

group.value("--seed", type=int, default=1234,
            help="Seed of python, numpy and torch, and of the dataset shuffles.")
group.switch("--data-parallel-random-init",
             help="Initialize each data-parallel replica differently.")
group.value("--init-method-std", type=float, default=0.02,
            help="Std of the normal weight init (output projections also scaled by "
                 "1/sqrt(2 x layers)).")
group.value("--embedding-init-method-std", type=float, state=UNSUPPORTED,
            help="Separate init std for embeddings (also exempts them from weight decay).")
group.switch("--init-method-xavier-uniform", help="Xavier-uniform weight init.")
