"""The paper the project reproduces, and how to find the lines it cites. A source written
`P:<line>` (in the protocol card, the presets' docstrings and the docs) is a line of the paper's
text as converted from its arXiv PDF to plain text, one paragraph or table row a line (632
lines). The project does not ship that text, so `LINES` holds, for each cited line, where it
sits in the paper and its first words: enough to find it in the PDF."""
from __future__ import annotations

import re

TITLE = "Facing the Elephant in the Room: Visual Prompt Tuning or Full Finetuning?"
ARXIV = "2401.12902"
CITATION = f"Han et al., *{TITLE}*, ICLR 2024, arXiv:{ARXIV} (https://arxiv.org/abs/{ARXIV})"
CODE = ("`VPT-or-FT <file>:<line>` is the paper's code (github.com/ChengHan111/VPT-or-FT at "
        "262898f); `VPT <file>:<line>` is VPT's (github.com/KMnP/vpt at 4410440); "
        "`TOAST <file>:<line>` is TOAST's (github.com/bfshi/TOAST at e45b515), whose protocol "
        "the paper's Table 20 follows; `PETL_Vision <file>:<line>` is the PETL benchmark's "
        "(github.com/OSU-MLB/PETL_Vision at 245d262), which the `petl` study follows")

LINES: dict[int, tuple[str, str]] = {     # line -> (where in the paper, its first words)
    75: ("§4, 'Dataset'", "Our experiments are conducted on VTAB-1k [127] image classification "
                          "benchmark"),
    77: ("§4, 'Baselines'", "To ensure fair comparisons, we adopt the approach in VPT [49]"),
    79: ("§4, 'Implementation Details'", "Following [49; 37; 69; 15], we conduct grid search "
                                         "to match the best tuning hyperparameters"),
    109: ("§4", "Hence we analyze the datasets by categorizing them into four quadrants"),
    111: ("§4", "The FID scores with respect to the better finetuning method of all 19 tasks"),
    115: ("§4", "The above observation holds for scenarios when we have a limited amount of "
               "data"),
    122: ("§4, Figure 3's caption", "Overall FID score with respect to win/loss of visual "
                                   "prompt tuning"),
    137: ("Table 3 (one-shot, Natural and Specialized), its 'Tuned / Total' row",
          "- Tuned / Total 0.20% 0.20% 0.15%"),
    159: ("Table 4 (one-shot, Structured), its 'Tuned / Total' row",
          "- Tuned / Total 0.54% 2.11% 1.07%"),
    176: ("§5, on FT-then-PT", "we first perform full finetuning on the network for the "
                               "downstream task and then prepend additional prompts"),
    512: ("Appendix E, 'Prompt length'", "In Table 16, 17 and 18, we posit the per-task prompt "
                                         "length"),
    552: ("the appendix, on the one-shot splits", "We select one image per class for `train` "
                                                  "and `val`, respectively"),
    596: ("Table 16's caption (Natural prompt lengths)", "VTAB-1k [127] Natural per-task prompt "
                                                         "length for ViT-Base [24]"),
    610: ("Table 18 (Structured prompt lengths), its header row",
          "ViT-B/16 [24] (85.8M) VTAB-1k [127] Structured"),
    620: ("Table 19 (FGVC), its 'Tuned / Total (%)' row", "- Tuned / Total (%) 0.29 1.02 0.14"),
    623: ("Table 20's caption (LoRA, CIFAR-100)", "Cifar-100 [54] for ViT-Base [24] (bottom-up) "
                                                  "pretrained on supervised ImageNet-21k"),
}


def cited(text: str) -> list[int]:
    """The lines of `LINES` that `text` cites as P:<n>, P:<a>-<b> or P:<n>,<m>,..."""
    found = set()
    for group in re.findall(r"P:(\d+(?:[-,]\d+)*)", text):
        for part in group.split(","):
            low, _, high = part.partition("-")
            found |= {n for n in LINES if int(low) <= n <= int(high or low)}
    return sorted(found)


def legend(text: str) -> str:
    """What `P:<line>` in `text` points into, and where each line it cites sits (markdown)."""
    lines = "\n".join(f"- P:{n}: {LINES[n][0]}: \"{LINES[n][1]} ...\"" for n in cited(text))
    return (f"Sources: `P:<line>` is a line of the text of {CITATION}, converted from its PDF to "
            f"plain text one paragraph or table row a line (not shipped with the project; the "
            f"lines cited here are listed below with their first words). {CODE}.\n\n"
            f"Lines of the paper cited here:\n\n{lines}\n")
