"""Grad-CAM (Selvaraju et al., 2017): where in an image the evidence for a class lies.

The class score's gradient with respect to a conv layer's output, averaged over each channel's
map, weighs that channel; the map is the ReLU of the weighted sum of channels, upsampled to the
image. On the last conv layer it shows the regions that raised the score.

Written with two hooks, not a package. ``grad-cam`` (pytorch-grad-cam) would bring opencv-python,
scikit-learn, ttach and narwhals into every install for this one method; Captum would bring only
itself, and its ``LayerGradCam`` computes exactly these maps (docs/analysis.md: the two agree to
float precision on AlexNet), so the dependency buys nothing here. The hooks below also cope with
what the study's networks do: in-place activations, frozen layers, a compiled net.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from alexnet_study.analysis.layers import ConvLayer, conv_layers


@contextmanager
def capture(modules: Sequence[nn.Module]) -> Iterator[dict[nn.Module, torch.Tensor]]:
    """While open, the output of each of ``modules`` (its last call's) is kept in the dict yielded.

    What was kept is a copy, and the network goes on with a second copy of it: an in-place
    operation further on (an in-place ReLU, a residual ``+=``) cannot change what was kept, and
    the class score still depends on it (gradients reach it).
    """
    seen: dict[nn.Module, torch.Tensor] = {}

    def keep(module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        seen[module] = output.clone()
        return seen[module].clone()

    handles = [module.register_forward_hook(keep) for module in dict.fromkeys(modules)]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def eager_forward(net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``net(inputs)`` in eager mode: ``forward`` directly, so that a network compiled in place
    (``compile=true``) runs its modules one by one and every hook sees its layer."""
    return net.forward(inputs)


def grad_cam_maps(
    net: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    layer: ConvLayer | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps at ``layer``'s resolution (N, h, w), unnormalized, and the logits (N, classes).

    ``targets``: the class explained for each image (default: the predicted one); ``layer``: the
    last conv layer by default (its output after BatchNorm/activation).
    """
    module = (layer or conv_layers(net)[-1]).output
    was_training = net.training
    net.eval()
    try:
        # Lightning tests under inference mode, which enable_grad alone does not lift.
        with torch.inference_mode(False), torch.enable_grad(), capture([module]) as seen:
            # An input that needs a gradient (a copy: an inference-mode tensor cannot take part in
            # autograd): the layer's output is then in the graph even when every layer before it is frozen.
            x = inputs.detach().clone().float().requires_grad_(True)
            logits = eager_forward(net, x)
            chosen = logits.argmax(1) if targets is None else targets.to(logits.device)
            (grads,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), seen[module])
            activations = seen[module].detach()
    finally:
        net.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * activations).sum(1)), logits.detach()


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Maps (N, h, w) resized to ``size`` (bilinear) and scaled to [0, 1] per image (a map with no
    positive evidence stays 0)."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return up / up.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def grad_cam(
    net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, layer: ConvLayer | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps at the input's size in [0, 1] (N, H, W) and the class probabilities (N, classes)."""
    maps, logits = grad_cam_maps(net, inputs, targets, layer)
    return upsample(maps, tuple(inputs.shape[-2:])), logits.float().softmax(1)


def draw_overlay(ax: Axes, image: torch.Tensor, cam: torch.Tensor | None, title: str = "") -> None:
    """An image (C, H, W in [0, 1]) with a Grad-CAM map (H, W in [0, 1]) over it (``jet``: red = most evidence)."""
    picture = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray" if picture.shape[-1] == 1 else None)
    if cam is not None:
        ax.imshow(cam.detach().float().cpu().numpy(), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def grad_cam_figure(
    images: torch.Tensor, cams: torch.Tensor, titles: Sequence[str], layer: str, pairs: int = 4
) -> Figure:
    """Each image (N, C, H, W in [0, 1]) beside its Grad-CAM overlay, ``pairs`` pairs to a row."""
    n = images.shape[0]
    pairs = max(1, min(pairs, n))
    rows = -(-n // pairs)
    fig = Figure(figsize=(3.0 * pairs, 1.9 * rows + 0.4), layout="constrained")
    fig.suptitle(f"Grad-CAM at {layer} for the predicted class (red: most evidence)", fontsize=10)
    for i in range(n):
        draw_overlay(fig.add_subplot(rows, 2 * pairs, 2 * i + 1), images[i], None, titles[i])
        draw_overlay(fig.add_subplot(rows, 2 * pairs, 2 * i + 2), images[i], cams[i])
    return fig
