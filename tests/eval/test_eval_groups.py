"""Per-group evaluation: GROUPS.csv by image and by identity, RFW's layout, bad inputs, and
the console / results.json / HTML renderings of one entry."""

from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import ConfigError, DataError
from facerec.eval import benchmarks as bm
from facerec.eval import groups as gr
from facerec.eval.html_report import groups_html
from facerec.eval.pair_args import add_pair_benchmark_arguments, read_pair_benchmarks
from facerec.eval.report import _clean, percent

# 2 folds of 4 matched + 4 mismatched pairs; X = Alice, Bob; Y = Carol, Dave.
PAIRS_TXT = """2 4
Alice 1 2
Bob 1 2
Carol 1 2
Dave 1 2
Alice 1 Bob 1
Carol 1 Dave 1
Alice 2 Carol 2
Bob 2 Dave 2
Alice 2 3
Bob 2 3
Carol 2 3
Dave 2 3
Alice 3 Bob 3
Carol 3 Dave 3
Bob 1 Carol 1
Dave 3 Alice 3
"""
#: the group of each pair above by identity (None: across X and Y)
BY_IDENTITY = ["X", "X", "Y", "Y", "X", "Y", None, None] * 2
BY_IDENTITY[14:16] = [None, None]


def touch_images(root: Path, names: dict[str, int]) -> None:
    """Empty image files (the readers only check that they exist)."""
    for name, count in names.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            bm.lfw_image_path(root, name, i).touch()


@pytest.fixture
def lfw(tmp_path) -> bm.PairBenchmark:
    (tmp_path / "pairs.txt").write_text(PAIRS_TXT)
    touch_images(tmp_path / "lfw", {"Alice": 3, "Bob": 3, "Carol": 3, "Dave": 3})
    return bm.read_lfw(tmp_path / "pairs.txt", tmp_path / "lfw")


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_groups_by_identity(lfw, tmp_path):
    table = gr.read_groups_csv(
        write_csv(tmp_path / "g.csv", "identity,group\nAlice,X\nBob,X\nCarol,Y\nDave,Y\n")
    )
    plans, warnings = gr.plan_groups([lfw], table)
    pg = plans["lfw"]
    assert list(pg.labels) == BY_IDENTITY
    assert (pg.num_cross_genuine, pg.num_cross_impostor, pg.num_ungrouped) == (0, 4, 0)
    assert warnings == [
        "lfw: 4 of 16 pairs (0 genuine, 4 impostor) join images of two different groups; left "
        "out of every group (num_cross_group_pairs)"
    ]


def test_groups_by_image_any_trailing_part_of_the_path(lfw, tmp_path):
    root = (tmp_path / "lfw").as_posix()
    rows = ["image,group", f"{root}/Alice/Alice_0001.jpg,X", "./Alice/Alice_0002.jpg,X"]
    rows += ["Alice_0003.jpg,X"] + [f"Bob/Bob_000{i},X".replace(",", ".jpg,") for i in (1, 2, 3)]
    rows += [f"Carol/Carol_000{i}.jpg,Y" for i in (1, 2, 3)]
    rows += ["Dave/Dave_0001.jpg,Y", "Dave/Dave_0002.jpg,Y", "Zed/Zed_0001.jpg,Y"]  # no Dave 3
    table = gr.read_groups_csv(write_csv(tmp_path / "g.csv", "\n".join(rows) + "\n"))
    pg = gr.pair_groups(lfw, table)
    # Dave 3 has no group: "Dave 2 3", "Carol 3 Dave 3", "Dave 3 Alice 3" are ungrouped
    want = list(BY_IDENTITY)
    want[11] = want[13] = want[15] = None
    assert list(pg.labels) == want
    assert (pg.num_ungrouped, pg.num_cross_impostor) == (3, 3)
    # group Y keeps 1 impostor pair (Carol 1 Dave 1): refused before any embedding
    with pytest.raises(DataError, match=r"group 'Y' .* has 3 genuine and 1 impostor pairs"):
        gr.plan_groups([lfw], table)


def test_unknown_rows_are_a_counted_warning(lfw, tmp_path):
    table = gr.read_groups_csv(
        write_csv(tmp_path / "g.csv", "identity,group\nAlice,X\nBob,X\nCarol,Y\nDave,Y\nZed,Y\n")
    )
    _, warnings = gr.plan_groups([lfw], table)
    assert warnings[-1].endswith(
        "1 of 5 rows name no image of the benchmarks (first: 'Zed', line 6); ignored"
    )


def test_names_matching_no_image_are_refused_with_an_example(lfw, tmp_path):
    table = gr.read_groups_csv(write_csv(tmp_path / "g.csv", "image,group\nalice_1.png,X\n"))
    with pytest.raises(DataError, match=r"none of its 1 image names .* e\.g\. 'Alice/Alice_0001"):
        gr.plan_groups([lfw], table)


def test_bin_images_by_index_and_not_by_identity(tmp_path):
    b = bm.PairBenchmark(
        "tiny",
        bm.EncodedImages([b""] * 4, str(tmp_path / "tiny.bin")),
        [[0, 1], [2, 3]],
        [True, False],
    )
    table = gr.read_groups_csv(
        write_csv(tmp_path / "g.csv", "image,group\ntiny.bin #0,X\ntiny.bin #1,X\n")
    )
    assert list(gr.pair_groups(b, table).labels) == ["X", None]
    table = gr.read_groups_csv(write_csv(tmp_path / "i.csv", "identity,group\nAlice,X\n"))
    with pytest.raises(ConfigError, match="images of benchmark tiny have no identity folders"):
        gr.plan_groups([b], table)


def test_a_bin_beside_a_folder_benchmark_is_a_warning(lfw, tmp_path):
    b = bm.PairBenchmark("tiny", bm.EncodedImages([b""] * 2, "tiny.bin"), [[0, 1]], [True])
    table = gr.read_groups_csv(
        write_csv(tmp_path / "g.csv", "identity,group\nAlice,X\nBob,X\nCarol,Y\nDave,Y\n")
    )
    plans, warnings = gr.plan_groups([b, lfw], table)
    assert list(plans) == ["lfw"]
    assert (
        warnings[0].startswith("tiny: no per-group report (") and "identity folders" in warnings[0]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,group\na,X\n", r"line 1 is 'path,group'; expected the header 'image,group' or"),
        ("identity,group\nAlice\n", r"line 2 is 'Alice'; expected 'identity,group'"),
        ("identity,group\nAlice,X\nAlice,Y\n", r"line 3 puts identity 'Alice' in group 'Y' but "),
        ("identity,group\n", r"no rows after the header"),
        ("\n", r"empty; expected the header"),
    ],
)
def test_bad_groups_csv(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        gr.read_groups_csv(write_csv(tmp_path / "g.csv", text))


def test_missing_groups_csv(tmp_path):
    with pytest.raises(DataError, match=r"g\.csv: GROUPS\.csv not found"):
        gr.read_groups_csv(tmp_path / "g.csv")


# ------------------------------------------------------------------------------------- RFW


def write_rfw(root: Path, header: bool = False, lines: int = 20) -> None:
    """RFW's layout, tiny: per race 10 folds of 1 matched + 1 mismatched pair (no header,
    tab-separated, as RFW's files), identities m.<race><k> with 2 images each."""
    for race in bm.RFW_RACES:
        r = race.lower()
        text = ["10\t1"] if header else []
        for k in range(10):
            a, b = f"m.{r}{k}", f"m.{r}{k + 10}"
            text += [f"{a}\t1\t2", f"{a}\t1\t{b}\t2"]
            touch_images(root / "data" / race, {a: 2, b: 2})
        (root / "txts" / race).mkdir(parents=True)
        body = text[: len(text) - 20 + lines]
        (root / "txts" / race / f"{race}_pairs.txt").write_text("\n".join(body) + "\n")


def test_rfw_layout_is_one_benchmark_grouped_by_race(tmp_path):
    write_rfw(tmp_path / "rfw")
    parser = argparse.ArgumentParser()
    add_pair_benchmark_arguments(parser.add_argument_group("b"))
    (b,) = read_pair_benchmarks(parser.parse_args(["--rfw", str(tmp_path / "rfw")]))
    assert (b.name, b.num_pairs, len(b.images)) == ("rfw", 80, 120)
    assert b.images.paths[0].endswith("data/African/m.african0/m.african0_0001.jpg")
    plans, warnings = gr.plan_groups([b], None)
    labels = plans["rfw"].labels
    assert list(labels) == [race for race in bm.RFW_RACES for _ in range(20)] and not warnings
    for race in bm.RFW_RACES:  # each race has its own file's 10 folds, one pair of each class
        np.testing.assert_array_equal(b.folds[labels == race], np.repeat(np.arange(10), 2))
        np.testing.assert_array_equal(b.issame[labels == race], [True, False] * 10)


def test_rfw_pairs_file_with_the_lfw_header(tmp_path):
    write_rfw(tmp_path / "rfw", header=True)
    b = bm.read_rfw(tmp_path / "rfw")
    assert b.num_pairs == 80 and b.folds.max() == 9


def test_rfw_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="RFW folder not found"):
        bm.read_rfw(tmp_path / "none")
    write_rfw(tmp_path / "short", lines=19)
    with pytest.raises(DataError, match=r"19 pair lines and no .*a multiple of 20 lines"):
        bm.read_rfw(tmp_path / "short")
    write_rfw(tmp_path / "rfw")
    (tmp_path / "rfw" / "txts" / "Indian" / "Indian_pairs.txt").unlink()
    with pytest.raises(DataError, match=r"Indian_pairs\.txt: RFW pairs file not found"):
        bm.read_rfw(tmp_path / "rfw")
    write_rfw(tmp_path / "img")
    (tmp_path / "img" / "data" / "Asian" / "m.asian3" / "m.asian3_0002.jpg").unlink()
    with pytest.raises(DataError, match=r"m\.asian3_0002\.jpg: image not found \(1 of the 120"):
        bm.read_rfw(tmp_path / "img")


# ------------------------------------------------------------------------------- renderings


def rfw_entry(tmp_path) -> dict:
    write_rfw(tmp_path / "rfw")
    b = bm.read_rfw(tmp_path / "rfw")
    plans, _ = gr.plan_groups([b], None)
    rng = np.random.default_rng(0)
    scores = np.where(b.issame, 0.6, 0.2) + rng.normal(0, 0.15, b.num_pairs)
    return gr.group_entry(scores, b, plans["rfw"], n_folds=10, fars=[0.1, 0.5])


def test_console_json_and_html_carry_the_same_numbers(tmp_path):
    entry = rfw_entry(tmp_path)
    saved = json.loads(json.dumps(_clean(entry)))  # what results.json holds
    head, rows = gr.group_rows(saved)
    console = gr.format_groups("m", "rfw", saved)
    page = groups_html("m", "rfw", saved)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", page)
    assert [html.unescape(c) for c in cells] == [c for r in rows for c in r]
    assert [re.split(r"\s{2,}", ln.strip()) for ln in console[3 : 3 + len(rows)]] == rows
    for row, (g, v) in zip(rows, saved["groups"].items(), strict=True):
        assert row[0] == g and row[1] == str(v["num_pairs"])
        assert row[4] == f"{percent(v['accuracy_mean'])} ± {percent(v['accuracy_std'])}"
        assert row[head.index("TAR@5e-1 %")] == percent(v["tar_at_far"]["5e-1"]["tar"])
        assert row[-2:] == [percent(v["fmr"]), percent(v["fnmr"])]
    spread = gr.spread_lines(saved)
    gap = percent(saved["spread"]["accuracy"]["gap"])
    assert spread[0].startswith(f"accuracy spread (max - min): {gap} points")
    assert all("  " + s in console for s in spread)
    assert all(f"<li>{html.escape(s)}</li>" in page for s in spread)


def test_html_escapes_group_names(lfw, tmp_path):
    table = gr.read_groups_csv(
        write_csv(tmp_path / "g.csv", "identity,group\nAlice,<b>&\nBob,<b>&\nCarol,Y\nDave,Y\n")
    )
    plans, _ = gr.plan_groups([lfw], table)
    scores = np.where(lfw.issame, 0.7, 0.3)
    entry = gr.group_entry(scores, lfw, plans["lfw"], n_folds=2, fars=[0.5])
    page = groups_html("m<1>", "lfw", entry)
    assert "<b>&" not in page and "&lt;b&gt;&amp;" in page and "m&lt;1&gt;" in page
    assert entry["num_cross_group_pairs"] == {"genuine": 0, "impostor": 4}
