"""TrainState: where a training run is, passed explicitly to the loops, the log line and checkpoints.

The data position is the pair of consumed sample counts: the pretraining samplers are deterministic
functions of them (and of the seed and the data), so a run resumed with the same counts reads the
same next samples, whatever the number of loader workers.
"""
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict


@dataclass
class TrainState:
    iteration: int = 0  # optimizer steps taken (skipped steps included, as Megatron counts)
    consumed_train_samples: int = 0  # training samples read so far: the training data position
    consumed_valid_samples: int = 0  # validation samples read so far: the validation data position
    skipped_train_samples: int = 0  # samples of steps skipped on purpose (not read again)
    floating_point_operations_so_far: float = 0.0  # Megatron's FLOP count, for --log-progress
    skipped_iterations: int = 0  # steps whose update was not applied (fp16 overflow, NaN skipped)
    nan_iterations: int = 0  # steps whose loss was NaN or inf

    def state_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValueError(f"TrainState.load_state_dict: unknown fields {unknown} (a checkpoint of a newer "
                             "version?)")
        for name, value in state.items():
            setattr(self, name, type(getattr(self, name))(value))

    @classmethod
    def from_legacy_args(cls, saved_args: Dict[str, Any], iteration: int, flops: float) -> "TrainState":
        """The state of a checkpoint that kept its counters among the saved arguments (version 3)."""
        return cls(iteration=iteration,
                   consumed_train_samples=int(saved_args.get("consumed_train_samples", 0) or 0),
                   consumed_valid_samples=int(saved_args.get("consumed_valid_samples", 0) or 0),
                   floating_point_operations_so_far=float(flops or 0.0))
