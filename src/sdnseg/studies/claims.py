"""The paper's claims beside the study's paired differences, each with a verdict.

A claim (:class:`sdnseg.studies.spec.Claim`) names a paired comparison: ``variant`` minus
``reference`` in one metric, on every seed both runs have. The verdict rule is fixed here, before
any result, and is the same for every claim:

* fewer paired seeds than the variant is scheduled for: ``pending``;
* a two-sided paired t-test at p < 0.05 with the paper's sign: ``reproduced (direction)`` — the
  size is shown beside the paper's, not judged, since system and data differ;
* p < 0.05 against the paper's sign: ``contradicted``;
* otherwise ``inconclusive at this scale``, with what would settle it: the fewest paired seeds
  whose paired t-test (two-sided, α 0.05) would detect the paper's difference with 80% power at
  the spread measured here (exact power from the noncentral t distribution).

A claim of no difference (``paper_delta`` 0) reads ``consistent (no difference found)`` unless
the test rejects it (its 95% interval, shown beside it, says how small a difference that rules
out); one without a number (``paper_delta`` None) expects a positive difference.
With several claims tested, one p < 0.05 in twenty is expected by chance; the report says so.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from sdnseg.studies.spec import Claim, Study
from sdnseg.studies.summary import paired_test

ALPHA = 0.05
POWER = 0.8


def seeds_to_settle(std: float, paper_delta: float | None, most: int = 1000) -> int | None:
    """The fewest paired seeds n whose two-sided paired t-test at ``ALPHA`` detects
    ``paper_delta`` with ``POWER`` when the differences spread by ``std``: the power is
    ``P(|T| > t_crit)`` for T noncentral t with n − 1 degrees of freedom and noncentrality
    ``|Δ| / std · √n``. None without a number, a spread, or within ``most`` seeds."""
    from scipy.stats import nct, t

    if paper_delta in (None, 0.0) or math.isnan(std) or std == 0.0:
        return None
    effect = abs(paper_delta) / std
    for n in range(2, most + 1):
        df, shift = n - 1, effect * math.sqrt(n)
        critical = t.ppf(1 - ALPHA / 2, df)
        if nct.sf(critical, df, shift) + nct.cdf(-critical, df, shift) >= POWER:
            return n
    return None


def interval(deltas: list[float]) -> tuple[float, float]:
    """The 95% confidence interval of the mean paired difference (t distribution)."""
    from scipy.stats import t

    if len(deltas) < 2:
        return math.nan, math.nan
    mean, std = statistics.fmean(deltas), statistics.stdev(deltas)
    half = t.ppf(1 - ALPHA / 2, len(deltas) - 1) * std / math.sqrt(len(deltas))
    return mean - half, mean + half


def check_claim(claim: Claim, results: list[dict], planned: set[int]) -> dict[str, Any]:
    """The paired differences of one claim over the planned seeds both runs finished, and its
    verdict.

    Args:
        results: finished results (``name``, ``seed``, ``test`` metrics as fractions).
        planned: the seeds the study plans for both runs.
    """
    by_key = {(r["name"], r["seed"]): r["test"] for r in results}
    scheduled = len(planned)
    seeds = sorted(
        s
        for name, s in by_key
        if name == claim.variant
        and s in planned
        and (claim.reference, s) in by_key
        and claim.metric in by_key[(claim.variant, s)]
        and claim.metric in by_key[(claim.reference, s)]
    )
    deltas = [
        by_key[(claim.variant, s)][claim.metric] - by_key[(claim.reference, s)][claim.metric]
        for s in seeds
    ]
    mean, std, p = paired_test(deltas)
    expected = 1.0 if claim.paper_delta is None else math.copysign(1.0, claim.paper_delta)
    if len(deltas) < scheduled:
        verdict = f"pending ({len(deltas)} of {scheduled} seeds)"
    elif not math.isnan(p) and p < ALPHA:
        if claim.paper_delta == 0.0:
            verdict = "contradicted"
        else:
            verdict = "reproduced (direction)" if mean * expected > 0 else "contradicted"
    elif claim.paper_delta == 0.0:
        verdict = "consistent (no difference found)"
    else:
        verdict = "inconclusive at this scale"
    return {
        "claim": claim.claim,
        "paper": claim.paper,
        "metric": claim.metric,
        "variant": claim.variant,
        "reference": claim.reference,
        "paper_delta": claim.paper_delta,
        "seeds": seeds,
        "deltas": deltas,
        "mean": mean,
        "std": std,
        "wins": sum(d * expected > 0 for d in deltas),
        "p": p,
        "ci95": interval(deltas),
        "verdict": verdict,
        "seeds_to_settle": seeds_to_settle(std, claim.paper_delta),
    }


def check_claims(study: Study, results: list[dict]) -> list[dict[str, Any]]:
    """Every claim of the study, in the file's order (see :func:`check_claim`)."""
    checked = []
    for claim in study.claims:
        planned = set(study.run(claim.variant).seeds) & set(study.run(claim.reference).seeds)
        checked.append(check_claim(claim, results, planned))
    return checked


def _points(value: float | None, signed: bool = True) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{100 * value:{'+' if signed else ''}.2f}"


def claims_markdown(checked: list[dict[str, Any]]) -> list[str]:
    """The report's section on the paper's claims (differences in points)."""
    if not checked:
        return []
    lines = [
        "",
        "## The paper's claims beside ours",
        "",
        "Each claim's difference is the variant minus its reference on the same seed, in points; "
        "wins count the seeds with the paper's sign (positive for a claim of no difference), "
        "95% CI the interval of the mean difference. Verdict rule (`sdnseg.studies.claims`, "
        "written before the first +SDN result was seen): paired t-test p < 0.05 with the "
        "paper's sign is *reproduced (direction)*, against it *contradicted*, else "
        "*inconclusive*; *to settle*: the fewest paired seeds that would detect the paper's "
        "difference at our spread with 80% power. The paper's numbers come from other systems "
        "and data (Cityscapes): compare directions, not sizes. With this many claims, one "
        "p < 0.05 in twenty comes by chance.",
        "",
        "| claim | paper | metric | paper Δ | ours: variant − reference | pairs | our Δ "
        "| 95% CI | wins | p | verdict | to settle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in checked:
        n = len(c["seeds"])
        ours = _points(c["mean"]) + ("" if math.isnan(c["std"]) else f" ± {100 * c['std']:.2f}")
        settle = "–" if c["seeds_to_settle"] is None else f"{c['seeds_to_settle']} seeds"
        p = "–" if math.isnan(c["p"]) else f"{c['p']:.2g}"
        low, high = c["ci95"]
        ci = "–" if math.isnan(low) else f"[{_points(low)}, {_points(high)}]"
        lines.append(
            f"| {c['claim']} | {c['paper']} | {c['metric']} | {_points(c['paper_delta'])} "
            f"| {c['variant']} − {c['reference']} | {n} | {ours if n else '–'} | {ci} "
            f"| {c['wins']}/{n} | {p} "
            f"| {c['verdict']} | {settle} |"
        )
    return lines
