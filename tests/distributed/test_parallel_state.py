from megatron.core import parallel_state as ps
from megatron.core.parallel_state import _rank_grid_groups


def test_rank_order_tp_fastest():
    sizes = {"tp": 2, "cp": 1, "ep": 1, "dp": 2, "pp": 2}
    order = "tp-cp-ep-dp-pp"
    assert _rank_grid_groups(8, sizes, order, "tp") == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert _rank_grid_groups(8, sizes, order, "dp") == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert _rank_grid_groups(8, sizes, order, "pp") == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert _rank_grid_groups(8, sizes, order, "tp-pp") == [[0, 1, 4, 5], [2, 3, 6, 7]]


def _layout_checks(rank, world_size):
    out = {}
    for tp, pp in [(1, 1), (2, 1), (2, 2), (1, 4)]:
        layout = ps.initialize_model_parallel(tp, pp)
        out[(tp, pp)] = (ps.get_tensor_model_parallel_rank(), ps.get_data_parallel_rank(),
                         ps.get_pipeline_model_parallel_rank(), ps.get_data_parallel_world_size(),
                         layout.ranks("tp"), ps.is_pipeline_first_stage(), ps.is_pipeline_last_stage())
        ps.destroy_model_parallel()
    return out


def check_groups_on_four_ranks(results):
    """Assertions on _layout_checks' per-rank results (run inside test_process_groups' spawn)."""
    # rank 3 with tp=2, pp=2: tp rank 1, dp rank 0, pp rank 1
    assert results[3][(2, 2)][:4] == (1, 0, 1, 1)
    assert results[3][(2, 2)][4] == [2, 3]
    assert results[2][(2, 1)][:4] == (0, 1, 0, 2)
    assert results[0][(1, 4)][5:] == (True, False)
    assert results[3][(1, 4)][5:] == (False, True)
