"""Explicit process groups on CUDA/NCCL: the DeviceMesh from the layout's groups, the gloo twins of
the data-parallel groups, and a bf16 GPT step over an explicit ProcessGroupCollection.
Skipped without CUDA; the two-model check needs 4 GPUs."""
import pytest
import torch
import torch.distributed as dist

from tests.harness import run_distributed

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _one_gpu(rank, world_size):
    from megatron.core import parallel_state as ps
    from megatron.core.process_groups_config import ProcessGroupCollection
    from tests.distributed.test_process_groups import _train
    layout = ps.initialize_model_parallel(1)
    mesh = ps.get_device_mesh()
    gloo = ps.get_data_parallel_group_gloo()
    out = {"mesh_device": mesh.device_type, "mesh_tp": dist.get_process_group_ranks(mesh["tp"].get_group()),
           "gloo_backend": dist.get_backend(gloo), "tp": layout.ranks("tp")}
    _, losses, norms, _ = _train(ProcessGroupCollection.use_mpu_process_groups())
    out["losses"], out["norms"] = losses, norms
    return out


@needs_cuda
def test_mesh_gloo_twins_and_a_step_over_explicit_groups_on_one_gpu():
    out = run_distributed(_one_gpu, 1, backend="nccl")[0]
    assert out["mesh_device"] == "cuda" and out["mesh_tp"] == out["tp"] == [0]
    assert out["gloo_backend"] == "gloo"
    assert all(l == l and 0 < l < 10 for l in out["losses"]) and out["norms"][0] > 0


@pytest.mark.skipif(torch.cuda.device_count() < 4, reason="needs 4 GPUs")
def test_two_models_over_their_own_groups_on_four_gpus():
    from tests.distributed.test_process_groups import _close, _two_models
    results = run_distributed(_two_models, 4, backend="nccl")
    reference = results[0]["runs"][2]
    for res in results:
        run_x, run_y, _ = res["runs"]
        for run in (run_x, run_y):
            assert _close(run[0], reference[0], 1e-4)
