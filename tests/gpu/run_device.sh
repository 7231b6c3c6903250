#!/usr/bin/env bash
# What runs on a lent GPU machine: the GPU tests, then the throughput benchmark; a short table last.
#   bash tests/gpu/run_device.sh [benchmark shapes, default S2]
set -o pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-/tmp/device-out}"; mkdir -p "$OUT"
SHAPES="${1:-S2}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.txt"
python3 -c "import torch; print('torch', torch.__version__, 'gpus', torch.cuda.device_count())" | tee -a "$OUT/env.txt"
python3 -m pytest -q tests/gpu 2>&1 | tee "$OUT/gpu-tests.log" | tail -15
python3 tools/benchmark.py --shape "$SHAPES" --warmup 5 --steps 20 2> "$OUT/benchmark.log" | tee "$OUT/benchmark.jsonl"
tail -5 "$OUT/benchmark.log"
python3 - "$OUT/benchmark.jsonl" <<'PY'
import json, sys
print(f"{'shape':12} {'status':6} {'tokens/s':>10} {'MFU':>7} {'step s':>7} {'peak GiB':>8}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['shape']:12} {r['status']:6} {r['tokens_per_s']:10.0f} {100*r['mfu']:6.1f}% "
          f"{r['step_time_median_s']:7.3f} {r['peak_mem_gib']:8.1f}")
PY
