"""How group effects are sampled: a decision per group term and level, made before lowering.

``noncentered`` and ``centered`` are fixed choices of the IR's group terms;
``auto`` is decided here from the data (see ``choose``). The result is a
frozen ``Centering`` that the lowering stage takes as an argument: nothing
edits the design or re-lowers a model in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .design import Design, GroupBlock, nested_folds
from .families import family_spec
from .pilot import _moments


@dataclass(frozen=True)
class Centering:
    """Per group term (by its number): which levels are sampled centered, and why (``auto``)."""

    levels: Mapping[int, np.ndarray] = field(default_factory=dict)
    reasons: Mapping[int, str] = field(default_factory=dict)
    #: the measurement's moment estimate of each coefficient's group SD and the standard error of its log
    #: (``auto`` only), against which a variational fit's SDs are checked
    sd_estimates: Mapping[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def of(self, blk: GroupBlock) -> np.ndarray:
        if blk.number in self.levels:
            return self.levels[blk.number]
        return np.full(len(blk.levels), blk.term.param == "centered")

    def reason(self, blk: GroupBlock) -> str:
        return self.reasons.get(blk.number, "")

    @staticmethod
    def chosen(centered: np.ndarray) -> str:
        n_c = int(centered.sum())
        return "centered" if n_c == len(centered) else "noncentered" if n_c == 0 else "partially centered"


def nested_pairs(design: Design) -> dict[int, tuple[GroupBlock, np.ndarray]]:
    """Finer terms that can be sampled centered around a coarser factor's effects: fine term's number ->
    (the coarse term, each fine level's coarse level), for the folds of ``nested_folds`` (an intercept-only
    term on a factor nested in an intercept-only coarse factor: instructors within departments), at most one
    per predictor (the first in the formula: it takes the predictor's intercept, ``lower.absorbed``), none in
    an ordinal's mu. Which of them are so sampled: ``nested_centering``."""
    by_factor: dict[tuple[str, ...], list[GroupBlock]] = {}
    for blk in design.groups:
        by_factor.setdefault(blk.term.group, []).append(blk)
    coarse_of = {fine.number: (by_factor[c][0], level_map) for c, (fine, level_map) in nested_folds(by_factor).items()}
    out: dict[int, tuple[GroupBlock, np.ndarray]] = {}
    # not an ordinal's mu: its thresholds, which stand in for the intercept, stay in the likelihood, and
    # thresholds, finer coefficients and coarse offsets all shifted together cost nothing (a review: min
    # bulk ESS 8-55 against 241-258, R-hat up to 1.22)
    taken: set[str] = {"mu"} if family_spec(design.spec.family.name).kind == "ordinal" else set()
    for blk in design.groups:
        if blk.number in coarse_of and blk.predictor not in taken:
            out[blk.number] = coarse_of[blk.number]
            taken.add(blk.predictor)
    return out


def nested_centering(design: Design, centering: Centering) -> dict[int, tuple[GroupBlock, np.ndarray]]:
    """The pairs of ``nested_pairs`` whose finer term is centered and coarse term centered or non-centered
    (not partially): the finer term's level coefficients are sampled around their coarse level's coefficient
    (hierarchical centering on the nesting: ``d ~ N(dept_coef[up_d], sd_d)``, the departments' coefficients
    around the intercept), or, with the coarse term non-centered, around the population values plus their
    coarse level's effect (``d ~ N(Intercept + r_dept[up_d], sd_d)``). The data see the finer coefficients
    alone and the coarse ones only through the finer ones' prior: no ridge between a department's effect
    and its instructors'. InstEval (``(1|s) + (1|d) + (1|dept)``), ``benchmarks/bench_insteval.py``."""
    out = {}
    for number, (coarse, level_map) in nested_pairs(design).items():
        fine = design.group(number)
        if (Centering.chosen(centering.of(fine)) == "centered"
                and Centering.chosen(centering.of(coarse)) != "partially centered"
                and _pair_absorbs(design, centering, fine, coarse)):
            out[number] = (coarse, level_map)
    return out


#: the order in which terms absorb a population column (``lower.absorbed``): centered first
ABSORB_RANK = {"centered": 0, "partially centered": 1, "noncentered": 2}


def absorb_key(blk: GroupBlock, centering: Centering, columns: set[str]) -> tuple[int, int]:
    """``lower.absorbed``'s order of the terms that could absorb a population column: centered before the others,
    then the term with most of the predictor's population ``columns``, then (ties) the formula's order."""
    return ABSORB_RANK[Centering.chosen(centering.of(blk))], -len(set(blk.coef_names) & columns)


def _pair_absorbs(design: Design, centering: Centering, fine: GroupBlock, coarse: GroupBlock) -> bool:
    """Whether the pair's absorbing term (the coarse one if centered, else the finer one) would take the
    predictor's intercept (``lower.absorbed``, ties going to the pair): a centered term with more population
    columns beside it (``(1 + x | a)``) takes it instead, and is then left beside the pair unsplit (a term that
    absorbs one column and shares another is not split): a ridge through the intercept (a review: Intercept
    bulk ESS 5-20, R-hat up to 3.2). Then no pair."""
    p = design.predictors[fine.predictor]
    if not p.intercept:
        return True
    columns = {"Intercept"} | set(p.coef_names)
    mine = coarse if Centering.chosen(centering.of(coarse)) == "centered" else fine
    best = min(absorb_key(b, centering, columns) for b in p.groups if b.joint is None and "Intercept" in b.coef_names)
    return absorb_key(mine, centering, columns) == best


def fixed(design: Design) -> Centering:
    """The fixed choices of the formula (``auto`` terms stay non-centered until decided)."""
    return Centering({b.number: np.full(len(b.levels), b.term.param == "centered") for b in design.groups})


def needs_decision(design: Design) -> bool:
    return any(b.term.param == "auto" for b in design.groups)


#: a level is centered when its posterior variance of z (at a low plausible SD) is below this, i.e. when its
#: data outweigh the group-level prior 4:1 (n·sd²/sigma² > 4 for a Gaussian). The Gibbs-sampler analysis
#: puts the break-even at 0.5; for HMC the cost is asymmetric — a centered level whose SD can shrink is a
#: funnel (divergences, bias), a non-centered informative level only a correlation — so the bar is higher.
AUTO_THRESHOLD = 0.2
#: partial centering only when at most this fraction of levels sits between AUTO_THRESHOLD and 0.5
AUTO_AMBIGUOUS = 0.05
#: ... evaluated at a low plausible group SD: sd · exp(-this many standard errors of log sd)
AUTO_SD_QUANTILE_Z = 2.0


#: ... and only where the data rule out a group SD near zero: the normal-normal likelihood of the SD estimate
#: against a zero SD must exceed exp(1.92) (a 95% likelihood-ratio test). With few levels (drc's spinach: 5
#: curves) the likelihood of a zero SD is not small, the posterior reaches it, and a centered term is a funnel
#: there (measured: 450 of 4,000 transitions divergent centered, 1 non-centered)
AUTO_ZERO_SD_LR = 1.92
#: ... and never with fewer levels than this when several terms share the grouping factor: the curvature the
#: pilot measures is conditional on the level's other parameters (a curve's c given its b, d, e), which
#: overstates the information where they are correlated; with few levels the SD's posterior then reaches zero
#: unseen (drc's spinach, 5 curves: sd of c has its 94% HDI from 0; centered, 450 of 4,000 transitions diverged)
AUTO_MIN_LEVELS = 10


def _zero_sd_lr(est: np.ndarray, prec: np.ndarray, sd: float) -> float:
    """log L(sd) - log L(0) of the normal-normal model x_j ~ N(mu, 1/I_j + sd^2), mu profiled out."""
    ok = np.isfinite(est) & np.isfinite(prec) & (prec > 0)
    if ok.sum() < 2 or not np.isfinite(sd):
        return 0.0
    x, v = est[ok], 1.0 / prec[ok]

    def loglik(t2: float) -> float:
        w = 1.0 / (v + t2)
        mu = np.sum(w * x) / np.sum(w)
        return float(-0.5 * np.sum(np.log(v + t2) + w * (x - mu) ** 2))

    return loglik(float(sd) ** 2) - loglik(0.0)


def choose(design: Design, info: Any) -> Centering:
    """Decide, per level of every ``param="auto"`` group term, centered or not.

    ``info`` (``pilot.Information``) holds each level's data precision I_jc (the curvature of the
    log-likelihood in its effect), a moment estimate of each coefficient's group SD and the
    standard error of its log. The rule (Papaspiliopoulos, Roberts & Sköld 2007): centering pays
    where a level's data are informative relative to the group SD, non-centering where they are
    not; a level's posterior variance of its non-centered offset, Var(z) = 1 / (1 + I·sd²),
    measures that ratio in one number for any family. A centered level turns into a funnel
    wherever the posterior lets its SD approach zero, so informativeness is judged at a low
    plausible SD, sd_low = sd·exp(-2·se(log sd)), and nothing is centered unless the data rule out a
    zero SD (a likelihood-ratio test of the normal-normal model). Levels with Var(z) < 0.2 at sd_low for every
    coefficient are centered, the others stay non-centered. Partial centering only when the
    levels fall into clearly separate regimes (at most 5% between 0.2 and 0.5); otherwise the
    factor gets one choice by its median level (centered if Var(z) < 0.5). A coarse term whose finer term will
    be centered around it (``nested_centering``) is then judged by the precision of its finer levels' estimates
    (``_through``), which is what it sees: centered when that centers most of its levels, else not.
    """
    base = fixed(design)
    levels, reasons = dict(base.levels), dict(base.reasons)
    for blk in design.groups:
        if blk.term.param == "auto":
            levels[blk.number], reasons[blk.number] = _decide(design, blk, info)
    # a coarse term whose finer term will be sampled around it (nested_centering): its data are those levels, not
    # the rows, which its finer term explains first
    for number, (coarse, up) in nested_pairs(design).items():
        fine = design.group(number)
        if coarse.term.param != "auto" or not levels[number].all():
            continue
        prec_fine = info.info[number][:, 0]
        est_fine = np.asarray(info.effects[number], dtype=float).reshape(-1)
        sd_fine = _sd_within(est_fine, prec_fine, up, float(info.sd[number][0]))
        # the coarse levels' estimates, precision and SD from the finer levels' totals (their effect plus their
        # coarse level's, whichever of the two the measurement, term by term in the formula's order, gave the rows'
        # shared part)
        coarse_tab = np.asarray(info.tables.get(coarse.number, np.zeros(len(coarse.levels))), dtype=float).reshape(-1)
        est, prec = _through(est_fine + coarse_tab[up], prec_fine, sd_fine, up, len(coarse.levels))
        sd_c, se_c, _ = _moments(est, prec)
        centered, reason = _decide(design, coarse, info, prec[:, None], est[:, None], np.array([sd_c]),
                                   np.array([se_c]))
        # one choice for the whole term (a partly centered coarse term would drop the pair, and its finer term
        # would meet the ridge the pair removes), by most of its levels; the measured one stands where it agrees
        most = centered.mean() >= 0.5
        if (levels[coarse.number].all() if most else not levels[coarse.number].any()):
            continue
        levels[coarse.number] = np.full(len(coarse.levels), most)
        reasons[coarse.number] = (
            f"{'all levels centered' if most else 'no level centered'}: the data it sees are {fine.label}'s levels, "
            f"sampled around its own (hierarchical centering on the nesting), each level's precision that of its "
            f"{fine.label} levels' estimates, sum 1 / (1 / I + sd_{fine.label}^2) (median {np.median(prec):.3g}), "
            f"not that of its rows, and by that precision {'most' if most else 'fewer than half'} of its levels "
            f"would be centered ({reason})")
    _unnest(design, levels, reasons)
    estimates = {b.number: (np.asarray(info.sd[b.number]), np.asarray(info.se_log_sd[b.number]))
                 for b in design.groups if b.number in info.sd}
    return Centering(levels, reasons, estimates)


def _sd_within(est: np.ndarray, prec: np.ndarray, up: np.ndarray, measured: float) -> float:
    """The finer term's SD around its coarse levels: the spread of its levels' effect estimates within the coarse
    levels that have several of them, less their sampling variance (a moment estimate), where at least 3 finer
    levels share a coarse level with another; else the measured SD. Unlike the measured SD it does not depend on
    the terms' order (the measurement goes term by term in the formula's order: a finer term measured first also
    holds the coarse levels' spread, measured after them it loses its share where a coarse level has one finer
    level, which then takes all of it)."""
    if not np.isfinite(measured):
        return measured
    ok = np.isfinite(est) & np.isfinite(prec) & (prec > 0)
    est, prec, up = est[ok], prec[ok], np.asarray(up)[ok]
    n = np.bincount(up)
    keep = n[up] >= 2
    if keep.sum() < 3:
        return measured
    means = np.bincount(up, weights=est) / np.maximum(n, 1)
    dev2 = (est - means[up])[keep] ** 2 * n[up][keep] / (n[up][keep] - 1)
    within = float(np.mean(dev2) - np.mean(1.0 / prec[keep]))
    return float(np.sqrt(within)) if within > 0 else measured


def _through(total: np.ndarray, prec_fine: np.ndarray, sd_fine: float, up: np.ndarray, levels: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Each coarse level's estimate and data precision when its finer levels are sampled around it: each finer
    level's estimate (``total``, its effect plus its coarse level's) varies by 1/I (its rows) + sd_fine^2 (its
    spread around the coarse level); the coarse level sees the sum of their precisions, and its estimate is their
    precision-weighted mean (0 where a level has none measured). With one brood per location (lme4's grouseticks)
    the precision is about 1/sd_fine^2, however many rows the location has."""
    up = np.asarray(up)
    ok = np.isfinite(prec_fine) & (prec_fine > 0)
    w = np.where(ok, 1.0 / (1.0 / np.where(ok, prec_fine, 1.0) + sd_fine ** 2), 0.0)
    prec = np.bincount(up, weights=w, minlength=levels)
    shown = ok & np.isfinite(total)
    num = np.bincount(up, weights=np.where(shown, w * np.where(shown, total, 0.0), 0.0), minlength=levels)
    den = np.bincount(up, weights=np.where(shown, w, 0.0), minlength=levels)
    return np.divide(num, den, out=np.zeros(levels), where=den > 0), prec


def _decide(design: Design, blk: GroupBlock, info: Any, prec: np.ndarray | None = None, est: np.ndarray | None = None,
            sd_mid: np.ndarray | None = None, se: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """``choose``'s rule for one ``auto`` term: its levels' centering and the reason (``prec``, ``est``: the levels'
    data precision and effect estimates, (levels, coefficients), ``sd_mid``, ``se``: the SD estimate and the
    standard error of its log, per coefficient, when not the measured ones)."""
    members = design.joint(blk.joint).members if blk.joint is not None else (blk,)
    if prec is None:
        prec = np.concatenate([info.info[m.number] for m in members], axis=1)  # (levels, coefficients)
    if sd_mid is None:
        sd_mid = np.concatenate([info.sd[m.number] for m in members])
    if se is None:
        se = np.concatenate([info.se_log_sd[m.number] for m in members])
    if not (np.all(np.isfinite(prec)) and np.all(np.isfinite(sd_mid)) and np.all(np.isfinite(se))):
        return (np.zeros(len(blk.levels), dtype=bool),
                "non-centered: the data's information could not be measured at the starting point")
    siblings = sum(1 for b in design.groups if b.term.group == blk.term.group)
    if len(blk.levels) < AUTO_MIN_LEVELS and siblings > 1:
        return np.zeros(len(blk.levels), dtype=bool), (
            f"no level centered: {len(blk.levels)} levels (fewer than {AUTO_MIN_LEVELS}) with {siblings} terms "
            f"on {blk.label.split('__')[0]}: each term's measured information ignores the level's other "
            "parameters, so with few levels the group SD may reach zero unseen, and a centered term is a "
            "funnel there"
        )
    if est is None:
        est = np.concatenate([np.asarray(info.effects[m.number]).reshape(len(blk.levels), -1) for m in members],
                             axis=1)
    lr = np.array([_zero_sd_lr(est[:, c], prec[:, c], sd_mid[c]) for c in range(prec.shape[1])])
    if np.any(lr < AUTO_ZERO_SD_LR):
        worst = int(np.argmin(lr))
        return np.zeros(len(blk.levels), dtype=bool), (
            f"no level centered: the data do not rule out a group SD near zero for coefficient {worst + 1} "
            f"(likelihood ratio of its SD estimate against zero {np.exp(lr[worst]):.3g} < "
            f"{np.exp(AUTO_ZERO_SD_LR):.3g}; {len(blk.levels)} levels), and a centered term is a funnel there"
        )
    sd_low = sd_mid * np.exp(-AUTO_SD_QUANTILE_Z * se)
    var_low = (1.0 / (1.0 + prec * np.square(sd_low))).max(axis=-1)
    ambiguous = float(np.mean((var_low >= AUTO_THRESHOLD) & (var_low < 0.5)))
    med = float(np.median(var_low))
    at = f"at a low plausible group SD ({', '.join(f'{v:.3g}' for v in sd_low)})"
    if ambiguous <= AUTO_AMBIGUOUS:
        # two clear regimes (or one): informative levels centered, the rest non-centered
        centered = var_low < AUTO_THRESHOLD
        n_c, J = int(centered.sum()), len(blk.levels)
        rule = (f"posterior variance of z < {AUTO_THRESHOLD}, i.e. data precision x sd^2 > "
                f"{1 / AUTO_THRESHOLD - 1:g}, {at}")
        reason = (
            f"{n_c} of {J} levels centered: their data pin the effects down ({rule})"
            + (f"; the others are far from it (median variance {med:.2f})" if n_c < J else "") if n_c else
            f"no level centered: none has data that pin its effects down ({rule}; median variance {med:.2f})"
        )
    else:
        # levels spread over the middle ground: one choice for the factor, by its typical level
        centered = np.full(len(blk.levels), med < 0.5)
        reason = (
            f"{'all levels centered' if med < 0.5 else 'all levels non-centered'}: {ambiguous:.0%} of the levels "
            f"are neither clearly informative nor clearly not {at}, so the factor gets one choice, by its "
            f"median level (posterior variance of z {med:.2f} {'<' if med < 0.5 else '>='} 0.5)"
        )
    return centered, reason


def _unnest(design: Design, levels: dict[int, np.ndarray], reasons: dict[int, str]) -> None:
    """No centered ``auto`` term beside a non-centered term of the same predictor that shares a column with
    it (both intercepts, or both a slope on x) on a factor it is nested in, crossed with, or that groups
    the rows the same way. The data see sums of effects (a student's, a lecturer's, a department's);
    a centered term's effects sit around zero or the population values, the non-centered term's are its
    offsets times its SD, and how a sum splits between them is left to the priors: a ridge across the
    population value, every level of one and the offsets of the other, which a diagonal mass matrix
    cannot follow. InstEval (``(1|s) + (1|d) + (1|dept)``, d nested in dept, s crossed with both) at
    4 x (150 + 150): s and d centered, dept not: 576 leapfrog steps per draw, R-hat 3.3; s alone centered:
    287 steps, R-hat 2.6; all non-centered: 55 steps. Repeated until nothing changes (a term made
    non-centered may meet another). A term nested in a centered one (classes in a centered school) is
    not concerned: the rule asks nothing of the parent. Nor is a term crossed with the other on
    population columns only: the lowering then makes a centered term absorb them and samples the
    non-centered one's mean apart (lower.split_terms), which removes the ridge through their levels
    (InstEval, 4 x (500 + 500): s centered, d and dept not, 39 steps per draw, 0.76 bulk ESS/s; all
    non-centered 55 steps, 0.60)."""
    pairs_nested = nested_pairs(design)

    def relation(blk: GroupBlock, other: GroupBlock) -> tuple[int, str] | None:
        """How ``blk`` stands to ``other`` when they share a column (an intercept, a slope), hence a sum:
        (rank, words), nested before crossed; None when ``blk`` is ``other``'s parent or nothing is shared.
        Nested: every level of ``blk`` occurs with one level of ``other`` (a lecturer in one department)."""
        if other.predictor != blk.predictor or not set(blk.coef_names) & set(other.coef_names):
            return None
        na, nb = len(np.unique(blk.g)), len(np.unique(other.g))
        pairs = len(np.unique(blk.g.astype(np.int64) * len(other.levels) + other.g))
        if other.factor == blk.factor or pairs == na == nb:
            return 0, f"{blk.label} groups the rows as {other.label} does"
        if pairs == na:
            fold = pairs_nested.get(blk.number)
            if (fold is not None and fold[0] is other and levels[blk.number].all()
                    and _pair_absorbs(design, Centering(levels), blk, other)):
                return None  # centered around other's effects (nested_centering): the data see blk's alone
            return 0, f"{blk.label} is nested in {other.label}"
        if pairs == nb:
            return None  # other is nested in blk: blk is its parent
        if shared_population(blk, other):
            return None  # crossed on population columns: other's mean is sampled apart (lower.split_terms)
        return 1, f"{blk.label} is crossed with {other.label}"

    def shared_population(blk: GroupBlock, other: GroupBlock) -> bool:
        """Neither is ID-linked, every column the two share is a population column of their predictor (not
        of an ordinal's mu, whose thresholds stand in for the intercept) and other has no population column
        blk lacks, so the
        lowering makes a centered term absorb them and samples the non-centered one's mean apart: no ridge
        through all of their levels."""
        if blk.joint is not None or other.joint is not None:
            return False  # an ID-linked term neither absorbs a column nor is split (a review: R-hat 1.17)
        p = design.predictors[blk.predictor]
        if p.name == "mu" and family_spec(design.spec.family.name).kind == "ordinal":
            return False
        pop = ({"Intercept"} if p.intercept else set()) | set(p.coef_names)
        # ... and other absorbs none (every population column of other is one of blk's, which outranks it)
        return set(blk.coef_names) & set(other.coef_names) <= pop and set(other.coef_names) & pop <= set(blk.coef_names)

    changed = True
    while changed:
        changed = False
        for blk in design.groups:
            if blk.term.param != "auto" or not levels[blk.number].any():
                continue
            found = [r for o in design.groups if o is not blk and not levels[o.number].any()
                     for r in [relation(blk, o)] if r is not None]
            if not found:
                continue
            how = min(found)[1]
            levels[blk.number] = np.zeros(len(blk.levels), dtype=bool)
            reasons[blk.number] = (
                f"no level centered: {how}, which is non-centered; centered {blk.label} effects beside it "
                "would leave the split of their sums to the priors (a ridge)"
            )
            changed = True
            break
    for number, (coarse, _) in nested_centering(design, Centering(levels)).items():
        if number in reasons:
            fine = design.group(number)
            reasons[number] += (f"; {fine.label} is nested in {coarse.label}: its levels are sampled around their "
                                f"{coarse.label}'s (hierarchical centering on the nesting, no ridge)")
