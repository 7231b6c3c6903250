import os

import pytest
import torch

# Tests compute on the CPU unless they are GPU tests (which pick CUDA themselves).
os.environ.setdefault("MEGATRON_DEVICE", "cpu")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace(os.sep, "/") or item.get_closest_marker("gpu"):
            item.add_marker(skip)
