"""The sweep report: statistics against values computed here by hand, arms and verdicts of a fixed
table, sweeps written before baselines were declared, report.html (and its rendering in a headless
browser where one is installed), and a resumed sweep that re-uses its finished jobs."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from alexnet_study.config.cli import check_command_line
from alexnet_study.errors import ConfigError
from alexnet_study.report import stats, write_report

from ..conftest import TINY, make_job, multirun_in_process

mpmath = pytest.importorskip("mpmath")  # an independent t distribution for the expected values

BASELINE = [0.70, 0.72, 0.74]
ARMS = {"0.1": [0.80, 0.81, 0.82], "0.01": BASELINE, "0.001": [0.69, 0.73, 0.75], "0.0001": [0.60, 0.62, 0.61]}


def t_cdf(x: float, df: float) -> float:
    """Student's t CDF by integrating its density (mpmath), not scipy."""
    density = lambda u: (  # noqa: E731
        mpmath.gamma((df + 1) / 2)
        / (mpmath.sqrt(df * mpmath.pi) * mpmath.gamma(df / 2))
        * (1 + u**2 / df) ** (-(df + 1) / 2)
    )
    return float(0.5 + mpmath.quad(density, [0, x]))


def t_quantile(q: float, df: float) -> float:
    return float(mpmath.findroot(lambda x: t_cdf(x, df) - q, 2.0))


def mean_sd(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def by_hand_welch(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """(difference, CI low, CI high, two-sided p) of Welch's test, from the textbook formulas."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    va, vb = sa**2 / len(a), sb**2 / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = (ma - mb) / math.sqrt(va + vb)
    half = t_quantile(0.975, df) * math.sqrt(va + vb)
    return ma - mb, ma - mb - half, ma - mb + half, 2 * (1 - t_cdf(abs(t), df))


def test_mean_and_confidence_interval_match_the_hand_computation() -> None:
    summary = stats.summarize(BASELINE)
    assert (summary.n, summary.mean, summary.std) == (3, pytest.approx(0.72), pytest.approx(0.02))
    assert summary.ci == pytest.approx(t_quantile(0.975, 2) * 0.02 / math.sqrt(3), rel=1e-6)  # 4.3027 * 0.01155
    assert summary.ci == pytest.approx(0.049683, abs=1e-6)
    assert stats.summarize([0.5]) == stats.Summary(1, 0.5, None, None)


@pytest.mark.parametrize("arm", ["0.1", "0.001", "0.0001"])
def test_welch_matches_the_hand_computation(arm: str) -> None:
    comparison = stats.welch(ARMS[arm], BASELINE)
    difference, low, high, p = by_hand_welch(ARMS[arm], BASELINE)
    assert comparison.difference == pytest.approx(difference)
    assert (comparison.low, comparison.high) == (pytest.approx(low, rel=1e-6), pytest.approx(high, rel=1e-6))
    assert comparison.p == pytest.approx(p, rel=1e-5)


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> kept non-decreasing: 0.03, 0.06, 0.06.
    assert stats.holm([0.01, 0.04, None, 0.03]) == [pytest.approx(0.03), pytest.approx(0.06), None, pytest.approx(0.06)]
    assert stats.holm([0.5, 0.9]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1


def _study(sweep: Path, declare: bool = True, runs: dict[str, list[float]] = ARMS) -> None:
    """A finished sweep over optim.lr, 0.01 declared as the baseline (listed second)."""
    number = 0
    for seed in range(max(len(values) for values in runs.values())):
        for lr, values in runs.items():
            if seed < len(values):
                make_job(sweep, number, [f"optim.lr={lr}", f"seed={seed}"], best_val_acc=values[seed] + 0.01,
                         test_acc=values[seed], seed=seed, data={"num_classes": 10, "splits": {"val": 1000}})  # fmt: skip
                if declare:
                    config = (
                        "task_name: lr_study\nreport:\n  question: Does the lr matter?\n  baseline: optim.lr=1.0e-2\n"
                    )
                    (sweep / str(number) / ".hydra" / "config.yaml").write_text(config)
                number += 1


@pytest.fixture(scope="module")
def declared_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`_study`'s sweep with its report written."""
    sweep = tmp_path_factory.mktemp("declared")
    _study(sweep)
    write_report(sweep)
    return sweep


def test_a_fixed_table_gives_the_hand_computed_statistics_and_verdicts(declared_study: Path) -> None:
    tmp_path = declared_study
    arms = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [arm["lr"] for arm in arms] == ["0.01", "0.1", "0.001", "0.0001"]  # baseline first, then sweep order
    assert arms[0]["arm"] == "lr 0.01" and arms[0]["verdict"] == "baseline"
    ci = t_quantile(0.975, 2) * 0.02 / math.sqrt(3)
    assert float(arms[0]["test_acc_ci_low"]) == pytest.approx(0.72 - ci, rel=1e-6)
    raw = {lr: by_hand_welch(ARMS[lr], BASELINE)[3] for lr in ("0.1", "0.001", "0.0001")}
    order = sorted(raw, key=raw.get)  # Holm: the smallest p times 3, the next times 2 (kept increasing), ...
    expected, running = {}, 0.0
    for rank, lr in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[lr]))
        expected[lr] = running
    for arm in arms[1:]:
        assert float(arm["p_welch"]) == pytest.approx(raw[arm["lr"]], rel=1e-5)
        assert float(arm["p_holm"]) == pytest.approx(expected[arm["lr"]], rel=1e-5)
    assert {arm["lr"]: arm["verdict"] for arm in arms[1:]} == {
        "0.1": "better", "0.001": "no detectable difference", "0.0001": "worse"
    }  # fmt: skip
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# lr_study:") and "**Question:** Does the lr matter?" in report
    assert "lr 0.1: **better**" in report and "lr 0.0001: **worse**" in report


def test_a_sweep_written_before_baselines_names_the_first_arm_and_asks_for_repeats(tmp_path: Path, capsys) -> None:
    from alexnet_study.report.__main__ import main as report_main

    _study(tmp_path, declare=False, runs={lr: values[:1] for lr, values in ARMS.items()})
    assert report_main([str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "**Baseline:** lr 0.1 (the first arm: the sweep declares no report.baseline)" in report
    assert "**No verdict is possible:**" in report and "`repeats=3`" in report
    arms = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [arm["verdict"] for arm in arms] == ["baseline", *[stats.NO_VERDICT] * 3]
    assert all(arm["test_acc_ci_low"] == "" for arm in arms)


def test_repeats_of_one_recipe_are_one_arm_named_all_runs_and_meet_their_declared_baseline(tmp_path: Path) -> None:
    # A setting given once on the command line is in every job's config, not a varying override.
    for seed, acc in enumerate(BASELINE):
        make_job(tmp_path, seed, ["model.batchnorm=false", f"seed={seed}"], test_acc=acc, seed=seed)
        config = "task_name: bn\nmodel:\n  batchnorm: false\nreport:\n  baseline: model.batchnorm=false\n"
        (tmp_path / str(seed) / ".hydra" / "config.yaml").write_text(config)
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "**Runs:** 1 arm, 3 jobs (0 not ok), seeds 0, 1, 2." in report
    assert "**Baseline:** all runs. One arm: nothing to compare." in report
    assert [arm["arm"] for arm in csv.DictReader((tmp_path / "report.csv").open())] == ["all runs"]


def test_a_setting_every_arm_shares_does_not_single_out_a_baseline(tmp_path: Path) -> None:
    for number, (lr, seed) in enumerate([("0.1", 0), ("0.01", 0), ("0.1", 1), ("0.01", 1)]):
        make_job(tmp_path, number, ["model.batchnorm=false", f"optim.lr={lr}", f"seed={seed}"], test_acc=0.5, seed=seed)
        config = "task_name: bn\nmodel:\n  batchnorm: false\nreport:\n  baseline: model.batchnorm=false\n"
        (tmp_path / str(number) / ".hydra" / "config.yaml").write_text(config)
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "the declared baseline model.batchnorm=false is not an arm of this sweep" in report


def test_the_html_page_inlines_every_figure_and_fetches_nothing(declared_study: Path) -> None:
    page = (declared_study / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    pngs = sorted(p.name for p in declared_study.glob("*.png"))
    assert len(sources) == len(pngs) >= 2 and "bars.png" in pngs
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page
    assert "Does the lr matter?" in page and '<td class="better">better</td>' in page


def test_the_html_page_renders_in_a_headless_browser(declared_study: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium installed")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,1600", (declared_study / "report.html").as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.is_file()
    with Image.open(shot) as image:
        gray = image.convert("L")
        histogram = gray.histogram()
    dark = sum(histogram[:128]) / sum(histogram)
    assert 0.005 < dark < 0.5, dark  # text and figures, not a blank (or black) page
    assert sum(1 for count in histogram if count) > 50  # anti-aliased text and plots: many gray levels


def test_a_sweep_needs_at_least_one_repeat() -> None:
    with pytest.raises(ConfigError, match=r"repeats=0: must be an integer >= 1"):
        check_command_line(["data=synthetic", "repeats=0", "-m"])


@pytest.mark.slow
def test_a_resumed_sweep_reuses_finished_jobs_and_runs_the_missing_ones(monkeypatch, tmp_path: Path) -> None:
    tiny = [*TINY, "trainer.max_epochs=1", "~callbacks.dataset_views", "model.activation=relu,tanh"]
    sweep = multirun_in_process(monkeypatch, tmp_path, *tiny, "repeats=1")
    kept = (sweep / "0" / "metrics.json").read_bytes()
    (sweep / "1" / "metrics.json").unlink()  # killed before it wrote anything
    # The same command on the same dir with one more repeat: job 0 is re-used, 1 runs again, 2 and 3 are new.
    again = multirun_in_process(monkeypatch, tmp_path, *tiny, "repeats=2", f"hydra.sweep.dir={sweep}")
    assert again == sweep and (sweep / "0" / "metrics.json").read_bytes() == kept
    jobs = list(csv.DictReader((sweep / "jobs.csv").open()))
    assert [(row["job"], row["status"], row["attempt"], row["seed"]) for row in jobs] == [
        ("0", "ok", "1", "42"), ("1", "ok", "2", "42"), ("2", "ok", "2", "43"), ("3", "ok", "2", "43"),
    ]  # fmt: skip
    attempts = json.loads((sweep / "attempts.json").read_text())
    assert [sorted(a["finished_jobs"]) for a in attempts] == [[], ["0"]]
    arms = list(csv.DictReader((sweep / "report.csv").open()))
    assert [(arm["arm"], arm["runs"]) for arm in arms] == [("activation relu", "2"), ("activation tanh", "2")]
