"""Figures 8 / 17: where FT and VPT look, on test images that VPT classifies correctly and FT does
not. Grad-CAM is captum's LayerGradCam on the patch tokens entering the last block, reshaped to the
patch grid (a pass-through module inserted by a forward pre-hook exposes them as B x D x h x w;
the tokens leaving the last block do not reach the class token the head reads); Integrated
Gradients is captum's, from a black image, summed over colour channels. Models are rebuilt from
the weights the final stage saved (prompts and head for VPT; full weights for FT when the study
kept them)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from captum.attr import IntegratedGradients, LayerGradCam  # noqa: E402
from torch import nn  # noqa: E402


class _PatchGrid(nn.Module):
    """Identity on B x D x h x w: the layer captum's Grad-CAM attributes to."""

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return grid


def _expose_patch_grid(model: nn.Module) -> _PatchGrid:
    """Route the patch tokens entering the last block through a grid-shaped pass-through layer
    (the tokens leaving it no longer reach the class token the head reads)."""
    grid_layer = _PatchGrid()
    h, w = model.patch_embed.grid_size

    def hook(_module, args):
        tokens = args[0]
        prefix = tokens.shape[1] - h * w        # class, register and prompt tokens come first
        patches = tokens[:, prefix:].transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
        patches = grid_layer(patches)
        tokens = torch.cat([tokens[:, :prefix], patches.flatten(2).transpose(1, 2)], dim=1)
        return (tokens, *args[1:])
    model.blocks[-1].register_forward_pre_hook(hook)
    return grid_layer


def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    layer = _expose_patch_grid(model)
    maps = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return maps[:, 0].detach().numpy()


def integrated_gradients(model: nn.Module, x: torch.Tensor, black: torch.Tensor,
                         target: torch.Tensor) -> np.ndarray:
    attributions = IntegratedGradients(model).attribute(x, baselines=black, target=target,
                                                        n_steps=32)
    return attributions.abs().sum(1).detach().numpy()


def vpt_right_ft_wrong(ft: nn.Module, vpt: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                       limit: int) -> torch.Tensor:
    with torch.no_grad():
        ft_pred, vpt_pred = ft(x).argmax(1), vpt(x).argmax(1)
    return torch.nonzero((vpt_pred == labels) & (ft_pred != labels)).flatten()[:limit]


def predictions(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).argmax(1).numpy()


def panels(images: np.ndarray, rows: dict[str, np.ndarray], title: str, captions=None):
    """One row per image: input | one column per method, each map scaled to [0, 1] per image
    (one colour bar for all); `captions` label the rows (true label, both predictions)."""
    columns = ["input", *rows]
    fig, axes = plt.subplots(len(images), len(columns), squeeze=False, layout="constrained",
                             figsize=(2.2 * len(columns) + 0.8, 2.2 * len(images)))
    shown = None
    for i, image in enumerate(images):
        axes[i, 0].imshow(image)
        for j, name in enumerate(rows, start=1):
            heat = rows[name][i] - rows[name][i].min()
            axes[i, j].imshow(image)
            shown = axes[i, j].imshow(heat / max(heat.max(), 1e-12), cmap="jet", alpha=0.5,
                                      vmin=0, vmax=1)
        for j, name in enumerate(columns):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(name, fontsize="small")
        if captions is not None:
            axes[i, 0].set_ylabel(captions[i], fontsize="x-small")
    if shown is not None:
        fig.colorbar(shown, ax=axes, shrink=0.8, label="attribution (scaled per image)")
    fig.suptitle(title, fontsize="medium")
    return fig
