"""docs/your-data.md, followed verbatim: its `bash` blocks run in order in a fresh folder holding
a generated image folder (3 classes, 36 images, a truncated JPEG and a text file named .png),
through import, the advice before any study, a one-epoch study from a TOML file and the advice
with the study's evidence. Marked slow (`pytest -m slow tests/test_your_data.py`): on 2 loaded
cores the import takes 6 s, the first advice 100 s (it generates the demo tasks and computes the
features of their 19,000 images), the study 63 s and the second advice 30 s."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "your-data.md"
COLOURS = {"class_a": (200, 40, 40), "class_b": (40, 200, 40), "class_c": (40, 40, 200)}


def commands(page: Path) -> str:
    """The page's bash blocks, in order, as one script."""
    return "\n".join(re.findall(r"```bash\n(.*?)```", page.read_text(), re.S))


def image_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for label, colour in COLOURS.items():
        (root / label).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(colour, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i:03d}.png")
    whole = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(whole, "JPEG")
    (root / "class_a" / "truncated.jpg").write_bytes(whole.getvalue()[:200])
    (root / "class_b" / "notes.png").write_text("not an image\n")


@pytest.mark.slow      # about 3.5 min on 2 loaded cores: the demo's reference features, a study
def test_the_your_data_page_runs_from_a_folder_to_the_advice(tmp_path):
    script = commands(PAGE)
    assert script.count("python -m") == 4 and "cat > my-study.toml" in script
    image_folder(tmp_path / "my-images")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VPT_CACHE_DIR", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(ROOT), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # the import skipped both malformed files and kept the 36 images
    assert re.search(r"skipped .*truncated\.jpg", out) and "notes.png" in out
    # both answers: measured at the task's 25 images (train20val5), too few for a verdict
    answers = sorted((tmp_path / "analysis_out").glob("*/advise_mine.md"))
    assert [p.parent.name for p in answers] == ["demo", "my-study"]
    before, after = (p.read_text() for p in answers)
    for text in (before, after):
        assert "no verdict: 25 images, fewer than the 100" in text
        assert re.search(r"FID [\d.]+ \(backbone-demo-vit-32\) on 25 images", text)
        assert "median of 7 reference tasks" in text and "quadrant: low disparity" in text
    assert "no task measured yet" in before
    # the study's own evidence: the task itself, at one seed too few to tell
    assert "1 measured tasks nearest by FID" in after
    assert re.search(r"\| mine\s+\| natural .*too few seeds to tell", after)
