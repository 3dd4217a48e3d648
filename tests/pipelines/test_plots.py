"""Plot tables: rows DVC can read (same keys everywhere) and the picture drawn from them."""

from pathlib import Path

from pipelines.plots import PlotDataset, line_figure, table


def test_series_become_one_table_with_gaps_as_none() -> None:
    rows = table("step", {"train": [(2, 1.5), (1, 2.0)], "validation": [(0, 3.0), (2, 1.8)], "off": []})
    assert rows == [
        {"step": 0, "train": None, "validation": 3.0, "off": None},
        {"step": 1, "train": 2.0, "validation": None, "off": None},
        {"step": 2, "train": 1.5, "validation": 1.8, "off": None},
    ]


def test_the_picture_has_a_line_per_series_with_points() -> None:
    rows = table("step", {"train": [(1, 2.0), (2, 1.5)], "validation": [(0, 3.0)], "off": []})
    (axes,) = line_figure(rows, "step", "loss", "nats").axes
    assert [line.get_label() for line in axes.lines] == ["train", "validation"]
    assert list(axes.lines[0].get_xdata()) == [1, 2]


def test_outside_a_run_the_table_is_a_json_file(tmp_path: Path) -> None:
    dataset = PlotDataset(str(tmp_path / "plots" / "loss.json"), x="step", title="loss", ylabel="nats")
    rows = table("step", {"train": [(1, 2.0)]})
    dataset.save(rows)
    assert dataset.load() == rows and dataset.exists()
