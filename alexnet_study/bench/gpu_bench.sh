#!/usr/bin/env bash
# The GPU measurements of the throughput targets (python -m alexnet_study.bench: 'package' at least 5x
# 'standard' and 20x 'naive'), one part per call; each part ends
# well inside 10 minutes on one H100 and writes at most 4 files into OUT_DIR.
#
#   bash alexnet_study/bench/gpu_bench.sh PART [OUT_DIR]      PART: main | compile | lightning | sweep | all
#
#   main       alexnet, alexnet_2012, alexnet_cifar: the four pipelines, input padded to 4
#              channels, batch sizes 128..1024, a torch profile of 'package'
#   compile    alexnet's 'package' and 'model_only' with torch.compile
#   lightning  the package's own Lightning loop (training.run.run) next to 'package'      (needs Hydra)
#   sweep      a 4-job sweep one after another vs hydra/launcher=parallel          (needs Hydra)
#
# Runs from the repository root with the python3 that has torch, torchvision, lightning,
# torchmetrics, pillow and PyYAML; installs nothing from the network. 'lightning' and 'sweep'
# also need hydra-core, omegaconf, antlr4-python3-runtime and hydra-joblib-launcher: when .whl/
# holds their wheels (docs/performance.md), they are installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:?usage: bash alexnet_study/bench/gpu_bench.sh main|compile|lightning|sweep|all [OUT_DIR]}
out=${2:-${OUT:-bench-out}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
models=alexnet,alexnet_2012,alexnet_cifar

run_part() {
  case $1 in
    main)
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
      # DataLoader workers hand batches over in /dev/shm: 'standard' keeps about 5 GB there
      # (32 prefetched batches of 256 float images at 227); if it fails with a bus error or
      # "No space left on device", enlarge it (as root: mount -o remount,size=16G /dev/shm).
      { nproc; df -h /dev/shm; } | tee -a "$out/gpu.txt"
      "$py" -m alexnet_study.bench --models "$models" --pad-channels --batch-sizes 128,256,512,1024 \
        --profile "$out/profile.txt" --json "$out/bench.json" 2>&1 | tee "$out/bench.log" ;;
    compile)
      "$py" -m alexnet_study.bench --pipelines package,model_only --compile \
        --json "$out/bench_compile.json" 2>&1 | tee "$out/bench_compile.log" ;;
    lightning)
      "$py" -m alexnet_study.bench --pipelines package --trainer --work-dir /tmp/alexnet_bench \
        --json "$out/bench_lightning.json" 2>&1 | tee "$out/bench_lightning.log" ;;
    sweep)
      "$py" -m alexnet_study.bench --pipelines none --sweep --work-dir /tmp/alexnet_bench \
        --json "$out/bench_sweep.json" 2>&1 | tee "$out/bench_sweep.log" ;;
    *) echo "unknown part '$1': main, compile, lightning, sweep or all" >&2; exit 2 ;;
  esac
}

if [ "$part" = all ]; then
  for p in main compile lightning sweep; do run_part "$p"; done
else
  run_part "$part"
fi
