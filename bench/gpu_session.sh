#!/usr/bin/env bash
# Everything issue 17 measures, in one run on a lent GPU (about 8 minutes on an H100; each step
# has its own time limit, so a slow one cannot starve the others). From the repository root:
#   bash bench/gpu_session.sh TOKENIZER_FOLDER OUT_FOLDER
# TOKENIZER_FOLDER: the embedded model's tokenizer files and config.json (33 MB, docs/performance.md § GPU).
# Writes gpu.txt, test_cuda.txt, bench_gpu.txt and study_gpu.txt into OUT_FOLDER.
set -u
tok=${1:?usage: bash bench/gpu_session.sh TOKENIZER_FOLDER OUT_FOLDER}
out=${2:?usage: bash bench/gpu_session.sh TOKENIZER_FOLDER OUT_FOLDER}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFER_NEURONS_CACHE=${TMPDIR:-/tmp}/transfer-neurons
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$out/gpu.txt"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.txt"
timeout 240 python bench/bench_gpu.py --device cuda --tokenizer "$tok" 2>&1 | tee "$out/bench_gpu.txt"
timeout 200 python bench/bench_gpu.py --device cuda --tokenizer "$tok" --shapes --study --study-model random \
    --study-timeout 180 2>&1 | tee "$out/study_gpu.txt"
