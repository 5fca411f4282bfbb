"""`attributions`: Figures 8/17, Grad-CAM and Integrated Gradients maps (input | FT | VPT) on test
images VPT classifies right and FT wrong, from the final stage's saved weights."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import attributions as attr
from analysis.inputs import final_runs
from analysis.verb import Verb, register
from common.errors import StudyInputError
from results.runs import counted
from tasks.demo import meaning


def arguments(parser) -> None:
    parser.add_argument("--samples", type=int, default=1000,
                        help="test images searched per task (default 1000)")
    parser.add_argument("--examples", type=int, default=4, help="images per figure (default 4)")


def trained_pair(final, task: str, cache_dir: str) -> dict:
    """The first seed's trained FT and VPT-deep models of a task."""
    from trainables.checkpoint import load_trained
    pair = {}
    for strategy in ("full_ft", "vpt_deep"):
        rows = final[(final["task"] == task) & (final["strategy"] == strategy)]
        saved = rows.sort_values("seed")["saved_weights"].dropna()
        saved = saved[saved != ""]
        if saved.empty:
            raise StudyInputError(f"no saved {strategy} weights for '{task}': run the final "
                                  f"stage again with --save-full-weights")
        pair[strategy] = load_trained(saved.iloc[0], cache_dir)[0]
    return pair


def run(args, runs, report) -> str:
    import torch
    from tasks import load_split
    from trainables.backbones import normalization
    from trainables.loop import Normalize
    final = counted(final_runs(runs))
    chosen = []
    for task in dict.fromkeys(final["task"]):
        pair = trained_pair(final, task, args.cache_dir)
        ft, vpt = pair["full_ft"], pair["vpt_deep"]
        images, labels = (np.array(a[:args.samples]) for a in
                          load_split(args.cache_dir, task, "test"))
        normalize = Normalize.of(*normalization(vpt), "cpu")
        x, y = normalize(torch.from_numpy(images)), torch.from_numpy(labels)
        picked = attr.vpt_right_ft_wrong(ft, vpt, x, y, args.examples)
        if len(picked) == 0:
            continue
        xs, ys = x[picked], y[picked]
        black = normalize(torch.zeros_like(torch.from_numpy(images[:1])).expand(len(picked),
                                                                              -1, -1, -1))
        shown = images[picked.numpy()]
        captions = [f"true: {meaning(task, label)}\nFT: {meaning(task, f)}\n"
                    f"VPT: {meaning(task, v)}" for label, f, v in
                    zip(ys.tolist(), attr.predictions(ft, xs), attr.predictions(vpt, xs))]
        report.figure(attr.panels(shown, {"FT Grad-CAM": attr.gradcam(ft, xs, ys),
                                          "VPT Grad-CAM": attr.gradcam(vpt, xs, ys)},
                                  f"{task}: VPT right, FT wrong (Grad-CAM for the true label)",
                                  captions), f"figure8_gradcam_{task}")
        report.figure(attr.panels(shown, {
            "FT IG": attr.integrated_gradients(ft, xs, black, ys),
            "VPT IG": attr.integrated_gradients(vpt, xs, black, ys)},
            f"{task}: VPT right, FT wrong (Integrated Gradients for the true label)", captions),
            f"figure17_ig_{task}")
        chosen += [{"task": task, "test_index": int(i), "label": int(labels[i])}
                   for i in picked]
    table = pd.DataFrame(chosen, columns=["task", "test_index", "label"])
    report.table(table, "attribution_examples")
    return f"{len(table)} test images where VPT is right and FT wrong, over " \
           f"{table['task'].nunique()} tasks\n" + table.to_markdown(index=False)


VERB = register(Verb("attributions", "Figures 8/17: Grad-CAM and Integrated Gradients, input | "
                                     "FT | VPT, on test images VPT gets right and FT wrong "
                                     "(needs the final stage's saved weights)", run, arguments))
