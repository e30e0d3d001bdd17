"""drc's dose-response models, effective doses and least-squares fitting, in numpy/scipy.

A re-implementation (not a port) of what R's drc package computes for continuous responses,
written from the formulas in drc's source (see FORMULAS.md for file/line citations):

* mean functions LL.3/LL.4/LL.5, W1.4 (and W1.3), W2.4, LN.4, BC.4/BC.5, exact at dose 0
  (the dose -> 0 limit is used; drc gets the same value from IEEE arithmetic, log(0) = -Inf);
* ``drm`` for ``type = "continuous"``: ordinary nonlinear least squares;
* ``vcov``: drc inverts the *observed* Hessian of the residual sum of squares,
  ``vcov = 2 * s^2 * H^-1`` with ``s^2 = RSS / (n - p)`` (drmEMls.R / vcov.drc.R), not the
  Gauss-Newton ``s^2 (J'J)^-1`` of ``nls``; both are reported here;
* with ``curveid`` every parameter is curve specific unless declared shared (drc's ``pmodels``),
  and one residual variance is pooled over all curves;
* ``ED`` (types relative/absolute, reference "control"), ``EDcomp``/``compParm`` ratios with
  delta-method standard errors and Fieller intervals, ``predict`` standard errors, ``logLik``.

Derivatives are exact: first derivatives by complex-step differentiation of the (analytic)
mean and ED functions; the Hessian of the RSS by central differences of that exact gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats
from scipy.special import ndtr, ndtri

FULL = ("b", "c", "d", "e", "f")

# model name -> (kind, fixed values of the full (b, c, d, e, f) vector); f is unused by W1/W2/LN
MODELS: dict[str, tuple[str, dict[str, float]]] = {
    "LL.3": ("LL", {"c": 0.0, "f": 1.0}),
    "LL.4": ("LL", {"f": 1.0}),
    "LL.5": ("LL", {}),
    "W1.3": ("W1", {"c": 0.0, "f": 0.0}),
    "W1.4": ("W1", {"f": 0.0}),
    "W2.4": ("W2", {"f": 0.0}),
    "LN.4": ("LN", {"f": 0.0}),
    "BC.4": ("BC", {"c": 0.0}),
    "BC.5": ("BC", {}),
}

CS_H = 1e-30  # complex-step size: derivative = Im f(x + i h) / h, no cancellation error


def free_names(model: str, fixed_extra: dict[str, float] | None = None) -> list[str]:
    _, fixed = MODELS[model]
    fixed = {**fixed, **(fixed_extra or {})}
    return [n for n in FULL if n not in fixed]


# ----------------------------------------------------------------------------- mean functions


def mean_full(kind: str, x, b, c, d, e, f):
    """drc's mean function for (row-wise) parameters; exact limit at dose 0.

    LL: c + (d - c) / (1 + exp(b (log x - log e)))^f          llogistic.R:33
    W1: c + (d - c) exp(-exp(b (log x - log e)))               weibull1.r:27
    W2: c + (d - c) (1 - exp(-exp(b (log x - log e))))         weibull2.r:27
    LN: c + (d - c) Phi(b (log x - log e))                     lnormal.r:20-27
    BC: c + (d - c + f x) / (1 + exp(b (log x - log e)))       braincousens.R:27
    At x = 0, b (log x - log e) -> -inf * sign(b).
    """
    x = np.asarray(x)
    if not np.iscomplexobj(x):
        x = x.astype(float)
    shape = x.shape
    b, c, d, e, f = (np.broadcast_to(np.asarray(v), shape) for v in (b, c, d, e, f))
    dtype = np.result_type(x, b, c, d, e, f, float)
    out = np.empty(shape, dtype=dtype)
    pos = np.real(x) > 0
    if np.any(np.real(x) < 0):
        raise ValueError("negative doses are not supported")
    xp = x[pos]
    bp, cp, dp, ep, fp = b[pos], c[pos], d[pos], e[pos], f[pos]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        z = bp * (np.log(xp) - np.log(ep))
        if kind == "LL":
            out[pos] = cp + (dp - cp) / (1.0 + np.exp(z)) ** fp
        elif kind == "W1":
            out[pos] = cp + (dp - cp) * np.exp(-np.exp(z))
        elif kind == "W2":
            out[pos] = cp + (dp - cp) * (1.0 - np.exp(-np.exp(z)))
        elif kind == "LN":
            out[pos] = cp + (dp - cp) * ndtr(z)
        elif kind == "BC":
            out[pos] = cp + (dp - cp + fp * xp) / (1.0 + np.exp(z))
        else:
            raise ValueError(kind)
    z0 = ~pos
    if np.any(z0):
        b0 = np.real(b[z0])
        c0, d0, f0 = c[z0], d[z0], f[z0]
        # value of the curve's "x -> 0" factor g in c + (d - c) g: 1 -> d, 0 -> c
        if kind in ("LL", "BC"):  # 1/(1+t)^f with t = (x/e)^b -> 0 (b>0) or inf (b<0)
            g_pos, g_neg = 1.0, 0.0
            g_mid = 0.5 ** f0 if kind == "LL" else 0.5
        elif kind == "W1":  # exp(-t)
            g_pos, g_neg, g_mid = 1.0, 0.0, np.exp(-1.0)
        elif kind == "W2":  # 1 - exp(-t)
            g_pos, g_neg, g_mid = 0.0, 1.0, 1.0 - np.exp(-1.0)
        else:  # LN: Phi(b log(x/e)) -> 0 (b>0) or 1 (b<0)
            g_pos, g_neg, g_mid = 0.0, 1.0, 0.5
        g = np.where(b0 > 0, g_pos, np.where(b0 < 0, g_neg, g_mid))
        out[z0] = c0 + (d0 - c0) * g
    return out


def limit_at_zero(kind: str, b: float) -> str:
    """Which asymptote the curve takes at dose 0 ('d' or 'c'), as drc's IEEE arithmetic gives it."""
    if kind in ("LL", "BC", "W1"):
        return "d" if b > 0 else "c"
    return "c" if b > 0 else "d"


# ----------------------------------------------------------------------------- effective doses


def ed_percent(kind: str, par: dict, p: float, type_: str = "relative", reference: str = "control"):
    """The percentage p' that drc's edfct plugs into its closed form, per model family.

    Returns p' (possibly complex when par is complex). See FORMULAS.md for the derivation.
    """
    b, c, d = par["b"], par["c"], par["d"]
    br = np.real(b)
    if kind in ("LL", "W1", "BC"):  # EDhelper (EDhelper.R:1-27)
        q = 100.0 * (d - p) / (d - c) if type_ == "absolute" else p
        if type_ == "relative" and br < 0 and reference == "control":
            q = 100.0 - q
        return q
    if kind == "W2":  # weibull2.r:158-189: absToRel, flip for absolute & b>0, then W1's EDhelper
        q = 100.0 * (d - p) / (d - c) if type_ == "absolute" else p
        if type_ == "absolute" and br > 0 and reference == "control":
            q = 100.0 - q
        if br < 0 and reference == "control":  # weibull1 edfct called with type "relative"
            q = 100.0 - q
        return q
    if kind == "LN":  # lnormal.r:164-189
        q = 100.0 * (d - p) / (d - c) if type_ == "absolute" else p
        if type_ == "absolute":
            q = 100.0 - q
        if type_ == "relative" and br < 0 and reference == "control":
            q = 100.0 - q
        return q
    raise ValueError(kind)


def ed_closed(kind: str, par: dict, q):
    """drc's closed-form ED for percentage q = ed_percent(...)."""
    b, e, f = par["b"], par["e"], par["f"]
    if kind == "LL":  # llogistic.R:211-212
        t = np.log((100.0 - q) / 100.0)
        return e * (np.exp(-t / f) - 1.0) ** (1.0 / b)
    if kind in ("W1", "W2"):  # weibull1.r:196-197
        t = np.log(-np.log((100.0 - q) / 100.0))
        return np.exp(t / b + np.log(e))
    if kind == "LN":  # lnormal.r:189-199
        return e * np.exp(ndtri_c(q / 100.0) / b)
    raise ValueError(kind)


def ndtri_c(pr):
    """Normal quantile that passes a complex perturbation through (for complex-step gradients)."""
    if np.iscomplexobj(pr):
        x0 = ndtri(np.real(pr))
        return x0 + 1j * np.imag(pr) / stats.norm.pdf(x0)
    return ndtri(pr)


def bc_ed(par: dict, p: float, type_: str = "relative", reference: str = "control",
          lower: float = 1e-3, upper: float = 1000.0) -> float:
    """Brain-Cousens ED as drc's braincousens.R:137-168 computes it (no closed form).

    drc first finds the dose of maximal response by uniroot on d f/dx = 0 over
    (lower, upper) = (1e-3, 1000) (fixed, dose-scale dependent interval), then solves
    f(x) = d - p'/100 (d - c) by uniroot on (maxAt, upper).
    """
    b, c, d, e, f = (float(np.real(par[k])) for k in FULL)
    q = float(np.real(ed_percent("BC", par, p, type_, reference)))
    tv = (100.0 - q) / 100.0

    def help_eqn(x):
        t = np.exp(b * (np.log(x) - np.log(e)))
        return f * (1 + t * (1 - b)) - (d - c) * t * b / x

    max_at = optimize.brentq(help_eqn, lower, upper, xtol=1e-14, rtol=1e-14)

    def eqn(x):
        return tv * (1 + np.exp(b * (np.log(x) - np.log(e)))) - (1 + f * x / (d - c))

    return optimize.brentq(eqn, max_at, upper, xtol=1e-14, rtol=1e-14)


# ----------------------------------------------------------------------------- design / fitting


@dataclass
class Design:
    """Rows (dose, response, curve index) and the parameter layout of a drm fit.

    ``shared``: parameter names that are common to all curves (drc ``pmodels`` column ``1``);
    the others are curve specific.  The coefficient vector is laid out like drc's:
    all b's (one per curve, or one if shared), then c's, d's, e's, f's.
    """

    model: str
    x: np.ndarray
    y: np.ndarray
    curve: np.ndarray  # int index into curves
    curves: list[str]
    shared: tuple[str, ...] = ()
    fixed_extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        self.kind, fixed = MODELS[self.model]
        self.fixed = {**fixed, **self.fixed_extra}
        self.names = free_names(self.model, self.fixed_extra)
        self.index: dict[str, np.ndarray] = {}
        labels: list[str] = []
        k = 0
        K = len(self.curves)
        for n in self.names:
            if n in self.shared or K == 1:
                self.index[n] = np.zeros(K, dtype=int) + k
                labels.append(f"{n}:(Intercept)")
                k += 1
            else:
                self.index[n] = np.arange(k, k + K)
                labels += [f"{n}:{cv}" for cv in self.curves]
                k += K
        self.labels = labels
        self.npar = k

    def curve_params(self, theta, j: int) -> dict:
        par = {n: self.fixed[n] for n in self.fixed}
        for n in self.names:
            par[n] = theta[self.index[n][j]]
        return par

    def mean(self, theta, x=None, curve=None):
        x = self.x if x is None else np.asarray(x, float)
        curve = self.curve if curve is None else np.asarray(curve)
        theta = np.asarray(theta)
        rows = {}
        for n in FULL:
            if n in self.fixed:
                rows[n] = np.full(x.shape, self.fixed[n])
            else:
                rows[n] = theta[self.index[n][curve]]
        return mean_full(self.kind, x, rows["b"], rows["c"], rows["d"], rows["e"], rows["f"])

    def resid(self, theta):
        return self.y - self.mean(theta)

    def jac_mean(self, theta, x=None, curve=None):
        """d mean / d theta (rows x npar), exact by complex step."""
        theta = np.asarray(theta, float)
        curve = self.curve if curve is None else np.asarray(curve)
        J = np.zeros((len(curve), self.npar))
        # a row depends only on its own curve's parameters: perturb one parameter name for all curves
        # at once (one complex evaluation per name), then scatter each row's derivative to its column
        for n in self.names:
            idx = np.unique(self.index[n])
            tc = theta.astype(complex)
            tc[idx] += 1j * CS_H
            dm = np.imag(self.mean(tc, x, curve)) / CS_H
            cols = self.index[n][curve]
            J[np.arange(len(curve)), cols] = dm
        return J

    def rss(self, theta):
        r = self.resid(theta)
        return float(r @ r)

    def grad_rss(self, theta):
        return -2.0 * self.jac_mean(theta).T @ self.resid(theta)

    def hess_rss(self, theta, rel=1e-4):
        """Observed Hessian of the RSS: central differences of the exact gradient."""
        theta = np.asarray(theta, float)
        k = len(theta)
        H = np.empty((k, k))
        for j in range(k):
            h = rel * max(abs(theta[j]), 1e-2)
            tp, tm = theta.copy(), theta.copy()
            tp[j] += h
            tm[j] -= h
            H[:, j] = (self.grad_rss(tp) - self.grad_rss(tm)) / (2 * h)
        return 0.5 * (H + H.T)


def _findcd(y):
    lo, hi = float(np.min(y)), float(np.max(y))
    r = 0.001 * (hi - lo)
    return lo - r, hi + r  # findcd.r:1-9


def self_start(model: str, x, y, fixed_extra=None) -> dict:
    """drc's default LL self starter (llogistic.ssf.R, method "1"): c, d just outside the response
    range, b and e from lm(log((d - y)/(y - c)) ~ log(x)) on x > 0.  Used for every family as one of
    several starting points."""
    c0, d0 = _findcd(y)
    kind, fixed = MODELS[model]
    fixed = {**fixed, **(fixed_extra or {})}
    if "c" in fixed:
        c0 = fixed["c"] if fixed["c"] < np.min(y) else c0
    m = (x > 0) & (y > c0) & (y < d0)
    lx = np.log(x[m])
    ly = np.log((d0 - y[m]) / (y[m] - c0))
    slope, icpt = np.polyfit(lx, ly, 1)
    b0 = slope if slope != 0 else 1.0
    e0 = float(np.exp(-icpt / b0))
    if not np.isfinite(e0) or e0 <= 0:
        e0 = float(np.median(x[x > 0]))
    start = {"b": float(b0), "c": c0, "d": d0, "e": e0, "f": 1.0 if kind == "LL" else 0.0}
    if kind in ("W2", "LN"):  # these families increase for b > 0: flip the sign
        start["b"] = -start["b"]
    return start


@dataclass
class Fit:
    design: Design
    theta: np.ndarray
    rss: float
    df: int
    n_starts: int
    n_at_best: int
    rss_spread: list[float]
    global_rss: float  # best RSS over all starts, on or off drc's branch

    @property
    def s2(self):
        return self.rss / self.df

    @property
    def sigma(self):
        return float(np.sqrt(self.s2))

    def vcov(self, method: str = "hessian"):
        """drc: 2 s^2 H^-1 with H the observed Hessian of the RSS; 'gauss-newton': s^2 (J'J)^-1."""
        if method == "hessian":
            H = self.design.hess_rss(self.theta)
            return 2.0 * self.s2 * np.linalg.inv(H)
        J = self.design.jac_mean(self.theta)
        return self.s2 * np.linalg.inv(J.T @ J)

    def se(self, method="hessian"):
        return np.sqrt(np.diag(self.vcov(method)))

    def loglik(self):
        n = len(self.design.y)  # drmEMls.R:40-46
        return -(n / 2.0) * (np.log(2 * np.pi) + np.log(self.rss) - np.log(n) + 1.0)

    def aic(self):
        return -2.0 * self.loglik() + 2.0 * (self.design.npar + 1)


def fit(design: Design, starts: list[np.ndarray] | None = None, extra_grid: bool = True,
        bounds=None) -> Fit:
    """Nonlinear least squares from several starts; returns the best, with convergence evidence."""
    x, y, K = design.x, design.y, len(design.curves)
    cand: list[np.ndarray] = list(starts or [])
    # per-curve self starters, assembled into the drc coefficient layout
    per = []
    for j in range(K):
        m = design.curve == j
        per.append(self_start(design.model, x[m], y[m], design.fixed_extra))

    def assemble(getter):
        th = np.zeros(design.npar)
        for n in design.names:
            idx = design.index[n]
            if idx[0] == idx[-1] and K > 1:
                th[idx[0]] = np.mean([getter(j, n) for j in range(K)])
            else:
                for j in range(K):
                    th[idx[j]] = getter(j, n)
        return th

    cand.append(assemble(lambda j, n: per[j][n]))
    if extra_grid:
        for bs in (0.5, 2.0, -1.0):
            for es in (0.3, 1.0, 3.0):
                cand.append(assemble(lambda j, n, bs=bs, es=es: per[j][n] * (bs if n == "b" else es if n == "e" else 1.0)))
    results = []
    for th0 in cand:
        try:
            kw = dict(jac=lambda t: -design.jac_mean(t), xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=20000)
            if bounds is None:
                r = optimize.least_squares(design.resid, th0, method="lm", **kw)
            else:
                r = optimize.least_squares(design.resid, th0, method="trf", bounds=bounds, **kw)
            if np.all(np.isfinite(r.x)) and np.isfinite(r.cost):
                results.append((2 * r.cost, r.x))
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            continue
    results.sort(key=lambda t: t[0])
    global_rss = results[0][0]
    canon = [(r, canonical(design, th)) for r, th in results]
    ok = [(r, th) for r, th in canon if on_drc_branch(design, th)]
    if not ok:
        raise RuntimeError(f"{design.model}: no start converged to drc's branch (c < d)")
    best_rss, best = ok[0]
    at_best = sum(1 for r, _ in ok if r <= best_rss * (1 + 1e-9))
    df = len(y) - design.npar
    return Fit(design, best, float(design.rss(best)), df, len(cand), at_best,
               [float(r) for r, _ in ok[:5]], float(global_rss))


def canonical(design: Design, theta: np.ndarray) -> np.ndarray:
    """Relabel exact symmetries into drc's convention c < d (lower, upper limit).

    LL.4 and LN.4 are invariant under (b, c, d, e) -> (-b, d, c, e); W1/W2/LL.5/BC have no such
    symmetry (W1(b, c, d, e) = W2(b, d, c, e) maps between the two families), so for those the
    wrong-branch solutions are discarded by on_drc_branch instead.
    """
    th = np.array(theta, dtype=float)
    if design.kind not in ("LN", "LL") or design.fixed.get("f", 1.0) != 1.0:
        return th
    if "c" in design.fixed or "d" in design.fixed or "b" in design.fixed:
        return th
    swaps = set()
    for j in range(len(design.curves)):
        ic, id_, ib = design.index["c"][j], design.index["d"][j], design.index["b"][j]
        if th[ic] > th[id_]:
            swaps.add((ib, ic, id_))
    for ib, ic, id_ in swaps:
        th[ib] = -th[ib]
        th[ic], th[id_] = th[id_], th[ic]
    return th


def on_drc_branch(design: Design, theta: np.ndarray) -> bool:
    """drc's self starter puts c below d (findcd), and its fits stay on that branch: require
    c < d for every curve, and b > 0 for Brain-Cousens (drc's maxfct refuses b < 1)."""
    for j in range(len(design.curves)):
        par = design.curve_params(theta, j)
        if not par["c"] < par["d"]:
            return False
        if design.kind == "BC" and not par["b"] > 0:
            return False
    return True


# ----------------------------------------------------------------------------- derived quantities


def ed(fit_: Fit, j: int, p: float, type_: str = "relative", vcov=None, drc_absolute_se=True):
    """ED_p for curve j with drc's delta-method SE.

    For type 'absolute' drc's gradient ignores the dependence of p' on c and d
    (llogistic.R:219-225 is commented out); drc_absolute_se=True reproduces that,
    False gives the full delta-method gradient.
    """
    d_ = fit_.design
    V = fit_.vcov() if vcov is None else vcov
    th = fit_.theta

    if d_.kind == "BC":
        val = bc_ed(d_.curve_params(th, j), p, type_)
        # implicit-function gradient: g(x, theta) = f(x; theta) - [d - p'/100 (d - c)] = 0
        def g(tc, xv):
            par = d_.curve_params(tc, j)
            q = ed_percent("BC", par, p, type_)
            tgt = par["d"] - q / 100.0 * (par["d"] - par["c"])
            return mean_full("BC", np.array([xv]), par["b"], par["c"], par["d"], par["e"], par["f"])[0] - tgt
        gth = np.empty(d_.npar)
        for k in range(d_.npar):
            tc = th.astype(complex)
            tc[k] += 1j * CS_H
            gth[k] = np.imag(g(tc, val)) / CS_H
        gx = np.imag(g(th.astype(complex), val + 1j * CS_H)) / CS_H
        grad = -gth / gx
        return float(val), float(np.sqrt(grad @ V @ grad)), grad

    def edfun(tc, stop_pd=False):
        par = d_.curve_params(tc, j)
        if stop_pd:
            par_q = {k: (np.real(v) if k in ("c", "d") else v) for k, v in par.items()}
            q = ed_percent(d_.kind, par_q, p, type_)
        else:
            q = ed_percent(d_.kind, par, p, type_)
        return ed_closed(d_.kind, par, q)

    val = float(np.real(edfun(th.astype(complex))))
    grad = np.empty(d_.npar)
    for k in range(d_.npar):
        tc = th.astype(complex)
        tc[k] += 1j * CS_H
        grad[k] = np.imag(edfun(tc, stop_pd=(type_ == "absolute" and drc_absolute_se))) / CS_H
    return val, float(np.sqrt(grad @ V @ grad)), grad


def ed_ratio(fit_: Fit, j1: int, j2: int, p1: float, p2: float, type_="relative", vcov=None, level=0.95,
             drc_absolute_se=True):
    """EDcomp: ED_p1(curve j1) / ED_p2(curve j2), delta SE, t-test of ratio = 1, delta and Fieller CIs
    (EDcomp.R:378-424, siInner.R, fieller in EDcomp.R:308-352)."""
    V = fit_.vcov() if vcov is None else vcov
    e1, _, g1 = ed(fit_, j1, p1, type_, V, drc_absolute_se)
    e2, _, g2 = ed(fit_, j2, p2, type_, V, drc_absolute_se)
    r = e1 / e2
    gr = (g1 - r * g2) / e2
    se = float(np.sqrt(gr @ V @ gr))
    tq = stats.t.ppf(1 - (1 - level) / 2, fit_.df)
    tstat = (r - 1) / se
    pval = 2 * stats.t.sf(abs(tstat), fit_.df)
    v11, v22, v12 = g1 @ V @ g1, g2 @ V @ g2, g1 @ V @ g2
    t2 = tq**2
    f0 = e1 * e2 - t2 * v12
    disc = f0**2 - (e1**2 - t2 * v11) * (e2**2 - t2 * v22)
    den = e2**2 - t2 * v22
    fl = ((f0 - np.sqrt(disc)) / den, (f0 + np.sqrt(disc)) / den)
    return {"estimate": r, "se": se, "t": tstat, "p": pval,
            "delta_ci": (r - tq * se, r + tq * se), "fieller_ci": tuple(float(v) for v in fl)}


def par_compare(fit_: Fit, name: str, i: int, j: int, op: str = "/", vcov=None):
    """compParm: ratio or difference of parameter `name` between curves i and j (compParm.R:28-44)."""
    V = fit_.vcov() if vcov is None else vcov
    a, b_ = fit_.design.index[name][i], fit_.design.index[name][j]
    pa, pb = fit_.theta[a], fit_.theta[b_]
    g = np.zeros(fit_.design.npar)
    if op == "/":
        est = pa / pb
        g[a], g[b_] = 1 / pb, -pa / pb**2
    else:
        est = pa - pb
        g[a], g[b_] = 1.0, -1.0
    return float(est), float(np.sqrt(g @ V @ g))


def predict(fit_: Fit, dose: float, j: int, vcov=None):
    V = fit_.vcov() if vcov is None else vcov
    xv, cv = np.array([float(dose)]), np.array([j])
    val = float(fit_.design.mean(fit_.theta, xv, cv)[0])
    g = fit_.design.jac_mean(fit_.theta, xv, cv)[0]
    return val, float(np.sqrt(g @ V @ g))


def lack_of_fit_rss(design: Design) -> tuple[float, int]:
    """RSS and df of the one-way ANOVA model (a mean per curve x dose), as in drc's modelFit."""
    rss, groups = 0.0, 0
    for j in range(len(design.curves)):
        for xv in np.unique(design.x[design.curve == j]):
            m = (design.curve == j) & (design.x == xv)
            yy = design.y[m]
            rss += float(((yy - yy.mean()) ** 2).sum())
            groups += 1
    return rss, len(design.y) - groups
