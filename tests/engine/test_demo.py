import json

from sdnseg.engine.cli import main


def test_demo_fast_writes_table_inputs_and_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fcn_r18d8_sdn" in printed and "BF@1px" in printed
    for name in ("diffusion.png", "predictions.png", "summary.json"):
        assert (out / name).is_file(), name
        assert str(out / name) in printed.replace("\n", "")
    # One seed: said so, with where the evidence is.
    flat = " ".join(printed.split())
    assert "one seed" in flat and "either way" in flat and "docs/camvid_study.md" in flat
    summary = json.loads((out / "summary.json").read_text())
    base, sdn = summary["results"]
    assert base["arch"] == "fcn_r18d8" and sdn["arch"] == "fcn_r18d8_sdn"
    assert sdn["params"] > base["params"]
    assert summary["wall_seconds"] > 0 and f"finished in {summary['wall_seconds']:.0f} s" in flat
    for result in (base, sdn):
        assert all(0 <= v <= 1 for v in result["metrics"].values())


def test_several_seeds_show_mean_spread_and_count():
    from argparse import Namespace

    from rich.console import Console

    from sdnseg.engine.demo import ROWS, comparison_table, verdict

    def run(arch, miou):
        metrics = {key: 0.5 for key in ROWS} | {"mIoU": miou}
        return {"arch": arch, "params": 10, "train_seconds": 1.0, "metrics": metrics}

    runs = {
        0: [run("base", 0.60), run("base_sdn", 0.62)],
        1: [run("base", 0.70), run("base_sdn", 0.66)],
    }
    console = Console(width=200, record=True)
    console.print(comparison_table(runs, Namespace(steps=5)))
    console.print(verdict(runs))
    text = " ".join(console.export_text().split())
    # mean ± sample std: baseline 65.00 ± 7.07, +SDN 64.00 ± 2.83, paired difference -1.00 ± 4.24
    assert "65.00 ± 7.07" in text and "64.00 ± 2.83" in text and "-1.00 ± 4.24 pt" in text
    assert "seeds 0, 1" in text and "1 of 2" in text and "docs/camvid_study.md" in text
