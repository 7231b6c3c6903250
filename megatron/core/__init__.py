"""The library part: parallel state, layers, models, optimizer, datasets. No global args here."""
from megatron.core import parallel_state

# Old Megatron scripts write `from megatron.core import mpu`.
mpu = parallel_state
