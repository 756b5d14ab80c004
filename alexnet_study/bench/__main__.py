"""``python -m alexnet_study.bench``: see :mod:`alexnet_study.bench.cli`."""

from alexnet_study.bench.cli import main

main()
