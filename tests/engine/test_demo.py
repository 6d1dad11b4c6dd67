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
    summary = json.loads((out / "summary.json").read_text())
    base, sdn = summary["results"]
    assert base["arch"] == "fcn_r18d8" and sdn["arch"] == "fcn_r18d8_sdn"
    assert sdn["params"] > base["params"]
    for result in (base, sdn):
        assert all(0 <= v <= 1 for v in result["metrics"].values())
