"""``facerec plot-features``: a tiny run writes a valid PNG with every panel; bad options fail."""

import cv2
import numpy as np
import pytest

from facerec.cli import main
from facerec.visualize import PANELS, synthetic_set


def test_tiny_run_writes_png(tmp_path, capsys):
    out = tmp_path / "sub" / "features.png"
    out.parent.mkdir()
    args = ["--out", str(out), "--identities", "3", "--images", "4", "--steps", "2"]
    args += ["--size", "16", "--width", "0.0625", "--batch", "6", "--jobs", "1"]
    assert main(["plot-features", *args]) == 0
    printed = capsys.readouterr().out
    for panel in PANELS:
        assert panel.title in printed
    assert f"wrote {out}" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 600
    assert img.std() > 5  # something was drawn on the white background
    assert [p.name for p in out.parent.iterdir()] == ["features.png"]  # no temporary left


def test_synthetic_set_shapes_and_labels():
    x, y = synthetic_set(3, 4, 16, 0)
    assert x.shape == (12, 3, 16, 16) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert not np.array_equal(x[0], x[4])


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--identities", "11"], "--identities"), (["--steps", "0"], "--steps")],
)
def test_bad_options_are_one_clear_error(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plot-features", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
