"""The report's detection tables: detection runs beside classification ones, rows Eval -> Tune first, each figure
as logged with its change versus Eval, no warnings about classification tags, and one chart per figure."""

import json

from torch.utils.tensorboard import SummaryWriter

from experiments.report.__main__ import main
from tests.experiments.test_report import cells, write_run

LOGGED = {"eval": {"map50": 0.80, "map": 0.40, "kept": 20.0, "peak": 60.0, "time": 0.50},
          "tune": {"map50": 0.81, "map": 0.40, "kept": 12.0, "peak": 45.0, "time": 0.45},
          "frozen": {"map50": 0.70, "map": 0.30, "kept": 20.0, "peak": 58.0, "time": 0.48}}


def write_detection_run(root, mode: str):
    run_dir = root / "detection" / mode
    run_dir.mkdir(parents=True)
    values = LOGGED[mode]
    (run_dir / "config.json").write_text(json.dumps(
        {"method": "detection", "dataset": "scenes", "task": "scenes U", "detector": "fasterrcnn",
         "arch": "resnet18", "bn_mode": mode, "seed": 0, "device": "cpu", "epochs": 2, "iters_per_epoch": 10}))
    writer = SummaryWriter(run_dir)
    writer.add_scalar("memory/kept_for_backward_mib", values["kept"], 0)
    writer.add_scalar("memory/step_peak_mib", values["peak"], 0)
    writer.add_scalar("memory/peak_mib", 900.0, 10)
    for step, seconds in ((10, 5.0), (20, values["time"])):  # the first window is warm-up
        writer.add_scalar("time/iter_s", seconds, step)
    for epoch in range(2):
        writer.add_scalar("eval/map50", values["map50"] - 0.1 * (1 - epoch), epoch)
        writer.add_scalar("eval/map", values["map"], epoch)
    writer.add_scalar("eval/best_map50", values["map50"], 1)
    writer.add_scalar("eval/best_map", values["map"], 1)
    writer.close()
    (run_dir / "results.json").write_text(json.dumps({"best_map50": values["map50"]}))


def test_detection_table_beside_classification(tmp_path, capsys):
    write_run(tmp_path, "A->W", "eval", 0)
    for mode in ("frozen", "tune", "eval"):
        write_detection_run(tmp_path, mode)
    assert main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    report = (tmp_path / "report.md").read_text()
    assert "## office31 · resnet50 · cpu" in report  # the classification table is still there
    lines = report.split("## detection · scenes U · fasterrcnn · resnet18 · cpu")[1].strip().splitlines()
    assert cells(lines[0])[:3] == ["BN mode", "seeds", "mAP@.5"]
    rows = {cells(line)[0]: cells(line) for line in lines[2:5]}
    assert [cells(line)[0] for line in lines[2:5]] == ["eval", "tune", "frozen"]
    assert rows["eval"][2:] == ["0.8000 (+0.0 pts)", "0.4000 (+0.0 pts)", "20.00 (+0.0%)", "60.00 (+0.0%)",
                                "0.500 (+0.0%)"]
    assert rows["tune"][2:] == ["0.8100 (+1.0 pts)", "0.4000 (+0.0 pts)", "12.00 (-40.0%)", "45.00 (-25.0%)",
                                "0.450 (-10.0%)"]
    assert rows["frozen"][2] == "0.7000 (-10.0 pts)"
    assert (tmp_path / "detection_scenes-U_cpu_kept_mib.png").is_file()
    assert (tmp_path / "detection_scenes-U_cpu_map50.png").is_file()
