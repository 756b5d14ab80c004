"""What a trained network learned: conv1 filters, activations, Grad-CAM, mistakes, the confusion matrix.

One module per view (:mod:`.filters`, :mod:`.activations`, :mod:`.gradcam`, :mod:`.mistakes`,
:mod:`.confusion`); :mod:`.views` draws them all for a :class:`TrainedModel` (from a live run or a
run dir); :class:`AnalysisViews` is the callback that writes them after a run's test;
``python -m alexnet_study.inspect RUN_DIR [IMAGE ...]`` writes them on demand and explains images;
:mod:`.sweep` lays out a sweep's arms' filters for the sweep report.
"""

from alexnet_study.analysis.callback import AnalysisViews
from alexnet_study.analysis.explain import Explanation, describe, explain, explain_figure
from alexnet_study.analysis.gradcam import grad_cam, grad_cam_maps
from alexnet_study.analysis.layers import ConvLayer, conv_layers
from alexnet_study.analysis.sweep import filters_by_arm, sweep_filters_figure
from alexnet_study.analysis.trained import TrainedModel, load_trained
from alexnet_study.analysis.views import (
    ViewSettings,
    activations_view,
    analysis_views,
    confusion_view,
    evaluate,
    filters_view,
    grad_cam_view,
    mistakes_view,
    write_views,
)

__all__ = [
    "AnalysisViews",
    "ConvLayer",
    "Explanation",
    "TrainedModel",
    "ViewSettings",
    "activations_view",
    "analysis_views",
    "confusion_view",
    "conv_layers",
    "describe",
    "evaluate",
    "explain",
    "explain_figure",
    "filters_by_arm",
    "filters_view",
    "grad_cam",
    "grad_cam_maps",
    "grad_cam_view",
    "load_trained",
    "mistakes_view",
    "sweep_filters_figure",
    "write_views",
]
