"""alexnet-study: AlexNet studies with PyTorch Lightning and Hydra.

The Python API (for notebooks and scripts)::

    import alexnet_study as als
    net = als.build_model("alexnet_2012", num_classes=10)      # a preset plus overrides
    print(als.summarize(net))                                 # shapes, parameters, FLOPs per layer
    run = als.fit(["data=synthetic", "trainer=smoke"])        # the command line's run, in-process
    als.plots.training_curves({"run": run.history})           # the report's own figures
    table = als.load_sweep("outputs/lr_sweep/multiruns/...")  # report rows as a DataFrame
    trained = als.load_trained(run.run_dir)                   # best checkpoint, classes, test images
    als.grad_cam_view(trained)                                # also filters_view, activations_view, ...
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Loaded on first use: `python -m alexnet_study --help` does not import matplotlib and friends, and
# the parts that need neither Hydra nor OmegaConf (models, data pipeline, `python -m
# alexnet_study.bench` on a bare GPU image) import without them.
_LAZY = {
    "compose": "alexnet_study.config.compose",
    "config_dir": "alexnet_study.config.presets",
    "build_model": "alexnet_study.api",
    "summarize": "alexnet_study.api",
    "fit": "alexnet_study.api",
    "sweep": "alexnet_study.api",
    "load_run": "alexnet_study.api",
    "load_sweep": "alexnet_study.api",
    "Run": "alexnet_study.api",
    "ModelSummary": "alexnet_study.api",
    "AlexNet": "alexnet_study.models",
    "build_alexnet": "alexnet_study.models",
    "count_parameters": "alexnet_study.models",
    "resolve_spec": "alexnet_study.models",
    "sweep_figures": "alexnet_study.report",
    "write_report": "alexnet_study.report",
    "plots": "alexnet_study.report.plots",
    "report": "alexnet_study.report",
    # What a trained network learned (alexnet_study.analysis): each view is a function returning a figure.
    "load_trained": "alexnet_study.analysis",
    "analysis_views": "alexnet_study.analysis",
    "filters_view": "alexnet_study.analysis",
    "activations_view": "alexnet_study.analysis",
    "grad_cam_view": "alexnet_study.analysis",
    "mistakes_view": "alexnet_study.analysis",
    "confusion_view": "alexnet_study.analysis",
    "explain": "alexnet_study.analysis",
    "explain_figure": "alexnet_study.analysis",
    "sweep_filters_figure": "alexnet_study.analysis",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'alexnet_study' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return module if name in ("plots", "report") else getattr(module, name)
