"""The paper's claims beside the study's paired differences, each with a verdict.

A claim (:class:`sdnseg.studies.spec.Claim`) names a paired comparison: ``variant`` minus
``reference`` in one metric, on every seed both runs have. The verdict rule is fixed here, before
any result, and is the same for every claim:

* fewer paired seeds than the variant is scheduled for: ``pending``;
* a two-sided paired t-test at p < 0.05 with the paper's sign: ``reproduced (direction)`` — the
  size is shown beside the paper's, not judged, since system and data differ;
* p < 0.05 against the paper's sign: ``contradicted``;
* otherwise ``inconclusive at this scale``, with what would settle it: the number of paired seeds
  that would detect the paper's difference at the spread measured here (two-sided test at 0.05,
  80% power, normal approximation ``n = ((z_0.975 + z_0.8) · sd / |Δ_paper|)²``).

A claim of no difference (``paper_delta`` 0) reads ``consistent (no difference found)`` unless
the test rejects it; one without a number (``paper_delta`` None) expects a positive difference.
With several claims tested, one p < 0.05 in twenty is expected by chance; the report says so.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from sdnseg.studies.spec import Claim, Study

ALPHA = 0.05
Z_ALPHA_POWER = 1.959964 + 0.841621  # z_{1 - 0.05/2} + z_{0.8}


def seeds_to_settle(std: float, paper_delta: float | None) -> int | None:
    """Paired seeds needed to detect ``paper_delta`` at spread ``std`` (80% power, α 0.05)."""
    if paper_delta in (None, 0.0) or math.isnan(std) or std == 0.0:
        return None
    return max(2, math.ceil((Z_ALPHA_POWER * std / abs(paper_delta)) ** 2))


def check_claim(claim: Claim, results: list[dict], scheduled: int) -> dict[str, Any]:
    """The paired differences of one claim over the seeds both runs finished, and its verdict.

    Args:
        results: finished results (``name``, ``seed``, ``test`` metrics as fractions).
        scheduled: how many paired seeds the study plans for this comparison.
    """
    from scipy.stats import ttest_1samp

    by_key = {(r["name"], r["seed"]): r["test"] for r in results}
    seeds = sorted(
        s
        for name, s in by_key
        if name == claim.variant
        and (claim.reference, s) in by_key
        and claim.metric in by_key[(claim.variant, s)]
        and claim.metric in by_key[(claim.reference, s)]
    )
    deltas = [
        by_key[(claim.variant, s)][claim.metric] - by_key[(claim.reference, s)][claim.metric]
        for s in seeds
    ]
    mean = statistics.fmean(deltas) if deltas else math.nan
    std = statistics.stdev(deltas) if len(deltas) > 1 else math.nan
    p = math.nan
    if len(deltas) > 1 and std > 0:
        p = float(ttest_1samp(deltas, 0.0).pvalue)
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
        "verdict": verdict,
        "seeds_to_settle": seeds_to_settle(std, claim.paper_delta),
    }


def check_claims(study: Study, results: list[dict]) -> list[dict[str, Any]]:
    """Every claim of the study, in the file's order (see :func:`check_claim`)."""
    checked = []
    for claim in study.claims:
        planned = set(study.run(claim.variant).seeds) & set(study.run(claim.reference).seeds)
        checked.append(check_claim(claim, results, len(planned)))
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
        "wins count the seeds with the paper's sign. Verdict rule (fixed before any result, "
        "`sdnseg.studies.claims`): paired t-test p < 0.05 with the paper's sign is *reproduced "
        "(direction)*, against it *contradicted*, else *inconclusive*; *to settle*: paired seeds "
        "that would detect the paper's difference at our spread (80% power). The paper's "
        "numbers come from other systems and data (Cityscapes, ADE20K): compare directions, "
        "not sizes. With this many claims, one p < 0.05 in twenty comes by chance.",
        "",
        "| claim | paper | metric | paper Δ | ours: variant − reference | pairs | our Δ "
        "| wins | p | verdict | to settle |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in checked:
        n = len(c["seeds"])
        ours = _points(c["mean"]) + ("" if math.isnan(c["std"]) else f" ± {100 * c['std']:.2f}")
        settle = "–" if c["seeds_to_settle"] is None else f"{c['seeds_to_settle']} seeds"
        p = "–" if math.isnan(c["p"]) else f"{c['p']:.2g}"
        lines.append(
            f"| {c['claim']} | {c['paper']} | {c['metric']} | {_points(c['paper_delta'])} "
            f"| {c['variant']} − {c['reference']} | {n} | {ours if n else '–'} "
            f"| {c['wins']}/{n} | {p} "
            f"| {c['verdict']} | {settle} |"
        )
    return lines
