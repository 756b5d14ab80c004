"""Throughput benchmarks: the package's training pipeline against the standard and naive ones
(``python -m alexnet_study.bench``), the augmentation presets (``python -m alexnet_study.bench.augment``),
and the GPU script ``gpu_bench.sh`` that runs them on one GPU."""
