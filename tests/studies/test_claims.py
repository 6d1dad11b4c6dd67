"""The paper's claims against paired study results: differences, t-test, verdict rule."""

import math

import pytest

from sdnseg.studies.claims import check_claim, check_claims, claims_markdown, seeds_to_settle
from sdnseg.studies.spec import Claim, RunSpec, Study


def results(deltas, metric="BF@1px", base=0.30):
    """Baseline and variant results on seeds 0.., the variant ``delta`` above on each seed."""
    out = []
    for seed, delta in enumerate(deltas):
        out.append({"name": "base", "seed": seed, "test": {metric: base + 0.01 * seed}})
        out.append({"name": "sdn", "seed": seed, "test": {metric: base + 0.01 * seed + delta}})
    return out


CLAIM = Claim("SDN raises BF", "Table 2", "BF@1px", "sdn", "base", paper_delta=0.043)


def two_sided_p_df2(deltas):
    """The t-test's p with 2 degrees of freedom in closed form: p = 1 - |t| / sqrt(2 + t^2)."""
    mean = sum(deltas) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in deltas) / 2)
    t = mean / (std / math.sqrt(3))
    return 1 - abs(t) / math.sqrt(2 + t * t)


def test_a_steady_gain_with_the_papers_sign_is_reproduced():
    deltas = [0.020, 0.025, 0.030]
    checked = check_claim(CLAIM, results(deltas), planned={0, 1, 2})
    assert checked["seeds"] == [0, 1, 2]
    assert checked["deltas"] == pytest.approx(deltas)
    assert checked["mean"] == pytest.approx(0.025) and checked["std"] == pytest.approx(0.005)
    assert checked["p"] == pytest.approx(two_sided_p_df2(deltas))
    assert checked["p"] < 0.05 and checked["wins"] == 3
    assert checked["verdict"] == "reproduced (direction)"


def test_a_steady_loss_contradicts_and_a_noisy_one_is_inconclusive():
    assert (
        check_claim(CLAIM, results([-0.02, -0.025, -0.03]), {0, 1, 2})["verdict"] == "contradicted"
    )
    noisy = check_claim(CLAIM, results([0.03, -0.02, 0.01]), {0, 1, 2})
    assert noisy["p"] == pytest.approx(two_sided_p_df2([0.03, -0.02, 0.01]))
    assert noisy["verdict"] == "inconclusive at this scale" and noisy["wins"] == 2
    # Effect size 0.043 / 0.02517 = 1.71: a paired t-test needs 5 seeds for 80% power
    # (4 give 0.68: the normal approximation's 3 would be far too few at these df).
    assert noisy["seeds_to_settle"] == 5
    low, high = noisy["ci95"]  # mean 0.00667 ± t(0.975, 2) = 4.303 times 0.02517 / sqrt(3)
    assert (low, high) == pytest.approx((0.00667 - 0.06253, 0.00667 + 0.06253), abs=1e-4)


def test_fewer_seeds_than_scheduled_is_pending_whatever_the_difference():
    checked = check_claim(CLAIM, results([0.05, 0.05]), planned={0, 1, 2})
    assert checked["verdict"] == "pending (2 of 3 seeds)"
    none = check_claim(CLAIM, results([]), planned={0, 1, 2})
    assert (
        none["seeds"] == [] and math.isnan(none["mean"]) and none["verdict"].startswith("pending")
    )


def test_a_claim_of_no_difference_and_a_claim_without_a_number():
    nothing = Claim("conv adds nothing", "Table 3a", "BF@1px", "sdn", "base", paper_delta=0.0)
    assert check_claim(nothing, results([0.03, -0.02, 0.01]), {0, 1, 2})["verdict"] == (
        "consistent (no difference found)"
    )
    assert (
        check_claim(nothing, results([0.02, 0.025, 0.03]), {0, 1, 2})["verdict"] == "contradicted"
    )
    direction = Claim("semantic term matters", "§3", "BF@1px", "sdn", "base")
    checked = check_claim(direction, results([-0.02, -0.025, -0.03]), {0, 1, 2})
    assert checked["verdict"] == "contradicted" and checked["seeds_to_settle"] is None


def test_seeds_to_settle_matches_the_power_tables():
    # Cohen's tables (and G*Power) for a two-sided one-sample/paired t-test at alpha 0.05 and
    # 80% power: effect size d = 1 needs n = 10, d = 0.8 n = 15, d = 0.5 n = 34.
    assert seeds_to_settle(0.01, 0.01) == 10
    assert seeds_to_settle(0.01, -0.008) == 15
    assert seeds_to_settle(0.02, 0.01) == 34
    assert seeds_to_settle(0.001, 0.043) == 3  # a huge effect still needs 3: df 1 has t_crit 12.7
    assert seeds_to_settle(math.nan, 0.043) is None and seeds_to_settle(0.01, None) is None


def test_a_seed_missing_the_metric_leaves_the_comparison():
    rows = results([0.02, 0.025, 0.03])
    del rows[3]["test"]["BF@1px"]  # the variant's seed 1
    checked = check_claim(CLAIM, rows, {0, 1, 2})
    assert checked["seeds"] == [0, 2] and checked["verdict"] == "pending (2 of 3 seeds)"


def test_study_claims_count_the_seeds_both_runs_plan_and_render_a_row(tmp_path):
    runs = [RunSpec("base", "a", [0, 1, 2]), RunSpec("sdn", "b", [0, 1], pair="base")]
    study = Study("fit.yaml", tmp_path, tmp_path / "r", runs, claims=[CLAIM])
    rows = results([0.02, 0.03, 0.5])  # seed 2 is not planned for sdn: left out
    (checked,) = check_claims(study, rows)
    assert checked["seeds"] == [0, 1]
    assert checked["verdict"] == "inconclusive at this scale"  # 2 of 2 planned pairs, p ~0.13
    text = "\n".join(claims_markdown([checked]))
    # CI: 0.025 ± t(0.975, 1) = 12.706 times 0.00707 / sqrt(2) = ± 0.0635
    row = "| sdn − base | 2 | +2.50 ± 0.71 | [-3.85, +8.85] | 2/2 | 0.13 | inconclusive"
    assert "| SDN raises BF | Table 2 | BF@1px | +4.30 " + row in text


def test_the_study_file_rejects_a_claim_on_an_unknown_run(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "config: fit.yaml\noutput_dir: runs\nresults: r\n"
        "runs: [{name: base, arch: a, seeds: [0]}]\n"
        "claims: [{claim: c, paper: p, metric: mIoU, variant: sdn, reference: base}]\n"
    )
    with pytest.raises(ValueError, match="unknown run 'sdn'"):
        Study.load(path)
    path.write_text(path.read_text().replace("variant: sdn", "variant: base, size: 2"))
    with pytest.raises(ValueError, match="unknown keys"):
        Study.load(path)


@pytest.mark.parametrize(
    ("claim", "error"),
    [
        ("{claim: c, paper: p, metric: BF1, variant: sdn, reference: base}", "not a test metric"),
        (
            "{claim: c, paper: p, metric: mIoU, paper_delta: 4.3, variant: sdn, reference: base}",
            "paper_delta is a fraction",
        ),
        ("{claim: c, paper: p, metric: mIoU, variant: one, reference: base}", "at least two"),
    ],
)
def test_the_study_file_rejects_claims_that_could_never_be_judged(tmp_path, claim, error):
    path = tmp_path / "study.yaml"
    path.write_text(
        "config: fit.yaml\noutput_dir: runs\nresults: r\nruns: [{name: base, arch: a, seeds: [0, 1]}, "
        "{name: sdn, arch: b, seeds: [0, 1], pair: base}, {name: one, arch: b, seeds: [1]}]\n"
        f"claims: [{claim}]\n"
    )
    with pytest.raises(ValueError, match=error):
        Study.load(path)
    path.write_text(path.read_text().replace(claim, claim.replace("BF1", "BF@1px_skip_ms")))
    if "BF1" in claim:
        assert Study.load(path).claims[0].metric == "BF@1px_skip_ms"
