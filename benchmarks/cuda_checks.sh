#!/usr/bin/env bash
# The GPU checks, in one go, on a machine with a CUDA GPU and StyleAtlas's packages importable:
#   bash benchmarks/cuda_checks.sh [OUT_DIR]        (logs: OUT_DIR/*.log; default out/cuda_checks)
# 1. tests/test_cuda.py: models, builds (fp32, bf16, fp16, jacobian), edits, fallbacks and the CLIs (torchrun, one
#    nccl rank) on the GPU against the CPU, with the measured differences printed;
# 2. benchmarks/generator.py and benchmarks/build.py on the GPU (the 1024 config-f projection of a full build);
# 3. the whole test suite with the GPU visible ("auto" devices resolve to cuda), time-boxed by SUITE_SECONDS.
set -o pipefail
out=${1:-out/cuda_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
py=${PYTHON:-python3}
{
    date -u
    nvidia-smi -L
    $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'cudnn tf32', torch.backends.cudnn.allow_tf32, 'matmul tf32', torch.backends.cuda.matmul.allow_tf32)"
} 2>&1 | tee "$out/machine.log"
$py -m pytest tests/test_cuda.py -q -s -rA -p no:cacheprovider 2>&1 | tee "$out/cuda_tests.log"
$py benchmarks/generator.py --resolution 1024 --batches 1,8 --backward-batches 1,4 --repeats 3 2>&1 | tee "$out/generator.log"
$py benchmarks/build.py --device cuda --channels 16 --images 8 --channels-1024 8 --images-1024 8 --batch-1024 16 \
    2>&1 | tee "$out/build.log"
timeout "${SUITE_SECONDS:-300}" $py -m pytest tests -q -p no:cacheprovider --maxfail 30 2>&1 | tee "$out/suite.log"
