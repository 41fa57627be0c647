"""The dynamic benchmark: a tiny end-to-end run, the report, and the command line."""

import json

import pytest
import torch
from vj_apps.bench import dynamic as bench_dynamic
from vj_dynamic.bench.benchmark import BenchmarkConfig, format_report, run_benchmark

ENTRY_KEYS = {"flops_dense", "flops_dynamic", "ms_dense", "ms_dynamic", "acc_dense", "acc_dynamic"}
IDK_KEYS = {"cost_best", "cost_cascade", "acc_best", "acc_cascade"}


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    config = BenchmarkConfig(
        image_size=16,
        depth=8,
        dense_epochs=1,
        sp_epochs=1,
        rl_epochs=1,
        batch_sizes=(1, 16),
        timed_samples=32,
        timed_samples_batch1=8,
        warmup=0,
        repeats=1,
        cnn_epochs=1,
        subset=96,
        ft_epochs=1,
        gate_thresholds=(0.4, 0.6),
        sweep_thresholds=(0.4, 0.6),
        sweep_batch_sizes=(1, 16),
        sweep_threads=(1,),
        sweep_repeats=1,
    )
    plot = tmp_path_factory.mktemp("plot") / "frontier.png"
    before = torch.get_num_threads()
    weights = tmp_path_factory.mktemp("weights")
    figure = plot.parent / "systems.png"
    results = run_benchmark(
        config, log=lambda line: None, plot=str(plot), weights_dir=str(weights), figure=str(figure)
    )
    assert sorted(p.name for p in weights.iterdir()) == ["resnet.pt", "skipnet.pt"]
    assert torch.get_num_threads() == before
    assert figure.stat().st_size > 1000
    return results, plot


def test_results_have_the_documented_shape(tiny_results):
    results, plot = tiny_results
    assert set(results["skipnet"]) == {"1", "16"}
    for entry in results["skipnet"].values():
        assert ENTRY_KEYS <= set(entry)
        # the counter and the analytic model agree on what ran
        assert entry["flops_dynamic"] == pytest.approx(entry["flops_dynamic_analytic"])
        assert entry["flops_dense"] == pytest.approx(entry["flops_dense_analytic"])
        assert entry["gate_decisions_agree"] == 1.0
        assert 0 <= entry["acc_dynamic"] <= 1 and entry["ms_dynamic"] > 0
        assert entry["cpu_ms_dynamic"] > 0 and entry["cpu_ms_dense"] > 0
    engine = results["details"]["engine_check_random_gates"]["16"]
    assert engine["flops_dynamic"] == pytest.approx(engine["flops_dynamic_analytic"])
    assert 0 < engine["execution_rate"] <= 1
    for entry in results["skipnet"].values():
        assert entry["flops_per_sample_p10"] <= entry["flops_per_sample_p90"]
        assert entry["flops_per_sample_p90"] <= 1.01 * entry["flops_dense"]  # gates cost a little
        assert entry["paths"] >= 1
    policy = results["details"]["policy"]
    assert policy["paths"] == results["skipnet"]["16"]["paths"]
    assert sum(policy["histogram"]["counts"]) == 96
    assert [row["group"] for row in policy["by_difficulty"]] == [0, 1, 2, 3]
    sweep = results["details"]["systems_sweep"]
    assert {(r["batch"], r["threads"], r["threshold"]) for r in sweep} == {
        (b, 1, t) for b in (1, 16) for t in (0.4, 0.6)
    }
    assert IDK_KEYS <= set(results["idk"])
    idk = results["idk"]
    assert (
        idk["kept"][-1] == idk["stages"][-1]["name"] or idk["stages"][-1]["name"] in idk["dropped"]
    )
    assert sorted(idk["kept"] + idk["dropped"]) == sorted(s["name"] for s in idk["stages"])
    assert len(results["idk"]["stages"]) == 3
    assert set(results["idk"]["plain_constraint"]) >= {"cost_cascade", "acc_cascade"}
    assert plot.stat().st_size > 1000
    json.dumps(results)  # serialisable as is
    report = format_report(results)
    assert "SkipNet" in report and "IDK cascade" in report


def test_main_writes_json_and_table(monkeypatch, tmp_path, capsys, tiny_results):
    results, _ = tiny_results
    seen = {}

    def fake_run(config, log, plot, weights_dir):
        seen["config"] = config
        return results

    monkeypatch.setattr(bench_dynamic, "run_benchmark", fake_run)
    out = tmp_path / "dynamic.json"
    assert (
        bench_dynamic.main(["--quick", "--json", str(out), "--alpha", "0.7", "--threads", "2"]) == 0
    )
    assert json.loads(out.read_text())["skipnet"].keys() == {"1", "16"}
    assert seen["config"].alpha == 0.7 and seen["config"].timing_threads == 2
    assert seen["config"].dense_epochs == BenchmarkConfig.quick().dense_epochs
    assert "IDK cascade" in capsys.readouterr().out


def test_main_reports_bad_arguments(tmp_path, capsys):
    assert bench_dynamic.main(["--json", str(tmp_path / "missing" / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_dynamic.main(["--dataset", "cifar"])


def test_config_validation():
    with pytest.raises(ValueError, match="dataset"):
        BenchmarkConfig(dataset="imagenet")
    with pytest.raises(ValueError, match="timed_samples"):
        BenchmarkConfig(timed_samples=8, batch_sizes=(1, 64))
    with pytest.raises(ValueError, match="subset"):
        BenchmarkConfig(subset=10)
