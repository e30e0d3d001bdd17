"""How group effects are sampled: a decision per group term and level, made before lowering.

``noncentered`` and ``centered`` are fixed choices of the IR's group terms;
``auto`` is decided here from the data (see ``choose``). The result is a
frozen ``Centering`` that the lowering stage takes as an argument: nothing
edits the design or re-lowers a model in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .design import Design, GroupBlock


@dataclass(frozen=True)
class Centering:
    """Per group term (by its number): which levels are sampled centered, and why (``auto``)."""

    levels: Mapping[int, np.ndarray] = field(default_factory=dict)
    reasons: Mapping[int, str] = field(default_factory=dict)

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


def choose(design: Design, pilot: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Centering:
    """Decide, per level of every ``param="auto"`` group term, centered or not.

    ``pilot`` holds, per latent site of a short mean-field SVI fit of the
    non-centered model, the guide's (location, scale) on the unconstrained
    scale. The rule (Papaspiliopoulos, Roberts & Sköld 2007): centering pays
    where a level's data are informative relative to the group SD,
    non-centering where they are not. With z the non-centered offset, a
    level's posterior variance Var(z | data) = 1 / (1 + I·sd²) (I its data
    precision) measures that ratio in one number for any family; the pilot
    gives Var(z | data) for every level and coefficient at the pilot's SD,
    hence I = (1/Var - 1) / sd². A centered level turns into a funnel wherever
    the posterior lets its SD approach zero, so the rule asks for informative
    data at a low plausible SD: sd_low = sd·exp(-2·se), se the standard error
    of log(sd) — the larger of the pilot's (mean-field, too small) and the
    normal-normal model's Fisher information, 2·Σ_j κ_j² with κ_j = 1 - Var(z_j).
    Levels with Var(z) < 0.2 at sd_low for every coefficient are centered, the
    others stay non-centered. Partial centering only when the levels fall into
    clearly separate regimes (at most 5% between 0.2 and 0.5); otherwise the
    factor gets one choice by its median level (centered if Var(z) < 0.5).
    """
    base = fixed(design)
    levels, reasons = dict(base.levels), dict(base.reasons)

    def sd_scale(members: tuple[GroupBlock, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Pilot SD of each coefficient and the mean-field scale of its log."""
        locs, scales = [], []
        for m in members:
            if f"sd_{m.label}" in pilot:  # one vector (or scalar) site
                loc, scale = pilot[f"sd_{m.label}"]
                locs.append(np.atleast_1d(loc))
                scales.append(np.atleast_1d(scale))
            else:  # one site per coefficient (priors of different kinds)
                for c in m.coef_names:
                    loc, scale = pilot[f"sd_{m.label}__{c}"]
                    locs.append(np.atleast_1d(loc))
                    scales.append(np.atleast_1d(scale))
        return np.exp(np.concatenate(locs)), np.concatenate(scales)

    for blk in design.groups:
        if blk.term.param != "auto":
            continue
        members = design.joint(blk.joint).members if blk.joint is not None else (blk,)
        site = f"z_{design.joint(blk.joint).label if blk.joint is not None else blk.label}"
        scale = np.asarray(pilot[site][1])
        var_z = np.clip(np.square(scale.reshape(len(blk.levels), -1)), 1e-12, 1.0)  # (levels, coefficients)
        sd_mid, mf_scale = sd_scale(members)
        # uncertainty of log(sd): the normal-normal model's Fisher information 2·sum_j kappa_j^2 with
        # kappa_j = 1 - Var(z_j) (a level's shrinkage weight); mean-field SVI understates it
        kappa = 1.0 - var_z
        se_log_sd = np.maximum(mf_scale, 1.0 / np.sqrt(2.0 * np.square(kappa).sum(axis=0) + 1e-12))
        sd_low = sd_mid * np.exp(-AUTO_SD_QUANTILE_Z * se_log_sd)
        info = (1.0 / var_z - 1.0) / np.square(sd_mid)  # data precision per level and coefficient
        var_low = (1.0 / (1.0 + info * np.square(sd_low))).max(axis=-1)
        ambiguous = float(np.mean((var_low >= AUTO_THRESHOLD) & (var_low < 0.5)))
        med = float(np.median(var_low))
        at = f"at a low plausible group SD ({', '.join(f'{v:.3g}' for v in sd_low)})"
        if ambiguous <= AUTO_AMBIGUOUS:
            # two clear regimes (or one): informative levels centered, the rest non-centered
            centered = var_low < AUTO_THRESHOLD
            n_c, J = int(centered.sum()), len(blk.levels)
            rule = (f"posterior variance of z < {AUTO_THRESHOLD}, i.e. data precision x sd^2 > "
                    f"{1 / AUTO_THRESHOLD - 1:g}, in a pilot SVI fit {at}")
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
        levels[blk.number], reasons[blk.number] = centered, reason
    return Centering(levels, reasons)
