"""Numbers published by drc's authors for the data sets used here, with their sources.

Every value below was copied from printed R output (drc or medrc), never from a re-run:
R is not available on this machine.  Keys name the quantity that drc_reference.py
reproduces (see `flat_key` there); a key of None means "recorded, not reproduced".
"""

from __future__ import annotations

DRC_COMMIT = "8719d43a09711250cd791d7d2bc965558d3e62a6"  # DoseResponse/drc master, 2021-05-04 (drc 3.2-0)
MEDRC_COMMIT = "bc36df514ad68d6e3f29ec4c740a563605231819"  # DoseResponse/medrc master, 2018-11-08 (medrc 1.1-0)

SOURCES = {
    "drc-docs": (
        "drc manual examples with printed output: pkgdown site in github.com/DoseResponse/drc, "
        f"docs/reference/<page>.html at commit {DRC_COMMIT[:7]} (pkgdown 1.1.0 render of drc's own examples)"
    ),
    "drc-help-md": (
        "drc data-set help pages rendered with output (pkgdown markdown: '# <title> ... ## Examples ... #> output'), "
        "found in the stored public code index; the index gives a file id, not the repository "
        "(ids: G.aparine 67120778887, S.alba 67237422509, lettuce 67276583206, vinclozolin 67120141105, "
        "ryegrass 67288925979)"
    ),
    "medrc-vignette": (
        "medrc vignette 'An introduction to the package medrc' with printed output: "
        f"github.com/DoseResponse/medrc docs/articles/medrc.html at commit {MEDRC_COMMIT[:7]} (medrc 1.1-0)"
    ),
}

_P: list[dict] = []


def P(key, value, source, page, what, tol_note=""):
    _P.append({"key": key, "value": value, "source": source, "page": page, "what": what, "note": tol_note})


# ----------------------------------------------------------------------------- ryegrass
R = "ryegrass"
for n, v, s in [("b", 2.98222, 0.46506), ("c", 0.48141, 0.21219), ("d", 7.79296, 0.18857), ("e", 3.05795, 0.18573)]:
    P(f"{R}/LL.4/coef/{n}", v, "drc-docs", "print.summary.drc.html", f"LL.4 {n}")
    P(f"{R}/LL.4/se/{n}", s, "drc-docs", "print.summary.drc.html", f"LL.4 SE({n})")
for n, v in [("b", 2.9822191), ("c", 0.4814132), ("d", 7.7929583), ("e", 3.0579550)]:
    P(f"{R}/LL.4/coef/{n}", v, "drc-docs", "coef.drc.html", f"LL.4 {n} (coef(), 8 digits)")
P(f"{R}/LL.4/sigma", 0.5196256, "drc-docs", "print.summary.drc.html", "LL.4 residual SE (20 df)")
_V = [[0.216282967, 0.04601511, -0.03504683, -0.003763692],
      [0.046015113, 0.04502563, -0.00471192, -0.016918440],
      [-0.035046835, -0.00471192, 0.03555759, -0.012868772],
      [-0.003763692, -0.01691844, -0.01286877, 0.034496126]]
for i in range(4):
    for j in range(i, 4):
        P(f"{R}/LL.4/vcov/{i}/{j}", _V[i][j], "drc-docs", "vcov.drc.html", f"LL.4 vcov[{i + 1},{j + 1}]")
for p, v, s in [(10, 1.46371, 0.18677), (50, 3.05795, 0.18573), (90, 6.38864, 0.84510)]:
    P(f"{R}/LL.4/ed/1/{p}", v, "drc-docs", "ED.drc.html", f"LL.4 ED{p}")
    P(f"{R}/LL.4/ed_se/1/{p}", s, "drc-docs", "ED.drc.html", f"LL.4 SE(ED{p}) delta method")
P(f"{R}/LL.4/loglik", -16.15514, "drc-docs", "logLik.drc.html", "LL.4 logLik")
P(f"{R}/LL.4/rss", 5.4002, "drc-docs", "neill.test.html", "LL.4 RSS (modelFit 'DRC model')")
P(f"{R}/lof_rss", 5.1799, "drc-docs", "neill.test.html", "one-way ANOVA RSS (modelFit, 17 df)")
for n, v, s in [("b", 2.47033, 0.34168), ("d", 7.85543, 0.20438), ("e", 3.26336, 0.19641)]:
    P(f"{R}/LL.3/coef/{n}", v, "drc-docs", "LL.3.html", f"LL.3 {n}")
    P(f"{R}/LL.3/se/{n}", s, "drc-docs", "LL.3.html", f"LL.3 SE({n})")
P(f"{R}/LL.3/sigma", 0.5615802, "drc-docs", "LL.3.html", "LL.3 residual SE (21 df)")
for n, v, s in [("b", 3.92870, 2.18882), ("c", 0.32165, 0.37943), ("d", 7.76054, 0.19319), ("e", 2.21539, 0.91883),
                ("f", 0.46831, 0.53020)]:
    P(f"{R}/LL.5/coef/{n}", v, "drc-docs", "LL.5.html", f"LL.5 {n}")
    P(f"{R}/LL.5/se/{n}", s, "drc-docs", "LL.5.html", f"LL.5 SE({n})")
P(f"{R}/LL.5/sigma", 0.5270098, "drc-docs", "LL.5.html", "LL.5 residual SE (19 df)")
for n, v, s in [("b", -1.96791, 0.29070), ("c", 0.32459, 0.24902), ("d", 7.72630, 0.17339), ("e", 2.48765, 0.14781)]:
    P(f"{R}/W2.4/coef/{n}", v, "drc-help-md", "ryegrass", f"W2.4 {n}")
    P(f"{R}/W2.4/se/{n}", s, "drc-help-md", "ryegrass", f"W2.4 SE({n})")
P(f"{R}/W2.4/sigma", 0.5144203, "drc-help-md", "ryegrass", "W2.4 residual SE (20 df)")
P(f"{R}/W1.4/rss", 6.0242, "drc-docs", "modelFit.html", "W1.4 RSS (modelFit / anova)")
P(f"{R}/W1.3/rss", 8.9520, "drc-docs", "anova.drc.html", "W1.3 RSS (anova)")
for m, ll, ic, rv in [("W2.4", -15.91352, 41.82703, 0.2646283), ("LL.4", -16.15514, 42.31029, 0.2700107),
                      ("LL.5", -15.87828, 43.75656, 0.2777393), ("W1.4", -17.46720, 44.93439, 0.3012075),
                      ("LL.3", -18.60413, 45.20827, 0.3153724), ("W1.3", -22.22047, 52.44094, 0.4262881)]:
    P(f"{R}/{m}/loglik", ll, "drc-docs", "mselect.html", f"{m} logLik (mselect)")
    P(f"{R}/{m}/aic", ic, "drc-docs", "mselect.html", f"{m} AIC (mselect IC)")
    P(f"{R}/{m}/resvar", rv, "drc-docs", "mselect.html", f"{m} residual variance (mselect)")
P(f"{R}/LN.4/loglik", -16.29214, "drc-docs", "maED.html", "LN.4 logLik (mselect in maED example)")
P(f"{R}/LN.4/aic", 42.58429, "drc-docs", "maED.html", "LN.4 AIC")
P(f"{R}/LN.4/resvar", 0.2731110, "drc-docs", "maED.html", "LN.4 residual variance")
for m, eds in [("LL.4", (1.463706, 3.057955, 6.388640)), ("LL.5", (1.560325, 3.023549, 7.729713)),
               ("LN.4", (1.489188, 3.044673, 6.224889)), ("W1.4", (1.405979, 3.088964, 5.101022)),
               ("W2.4", (1.628278, 2.996913, 7.805803))]:
    for p, v in zip((10, 50, 90), eds, strict=True):
        P(f"{R}/{m}/ed/1/{p}", v, "drc-docs", "maED.html", f"{m} ED{p} (maED table)")
for n, v, s in [("c", 0.12945, 0.36866), ("d", 8.23936, 0.30335), ("e", 4.53797, 0.63886)]:
    P(f"{R}/W1.4.b_fixed_1/coef/{n}", v, "drc-docs", "weibull1.html", f"W1.4(fixed=c(1,NA,NA,NA)) {n}")
    P(f"{R}/W1.4.b_fixed_1/se/{n}", s, "drc-docs", "weibull1.html", f"W1.4(fixed=c(1,NA,NA,NA)) SE({n})")
P(f"{R}/W1.4.b_fixed_1/sigma", 0.8384585, "drc-docs", "weibull1.html", "W1.4 b=1 residual SE (21 df)")
for n, v, s in [("b", 3.0, 0.82015), ("c", 0.68190, 0.18943), ("d", 7.68189, 0.23088), ("e", 3.58441, 0.16992)]:
    P(f"{R}/W1.4.b_ge_3/coef/{n}", v, "drc-docs", "weibull1.html", f"W1.4 with b >= 3: {n}")
    P(f"{R}/W1.4.b_ge_3/se/{n}", s, "drc-docs", "weibull1.html", f"W1.4 with b >= 3: SE({n})")
P(f"{R}/W1.4.b_ge_3/sigma", 0.5657677, "drc-docs", "weibull1.html", "W1.4 b >= 3 residual SE (20 df)")
for n, v, s in [("b", 3.0, 0.72020), ("c", 0.48364, 0.25420), ("d", 7.74462, 0.21500), ("e", 2.92416, 0.56297),
                ("f", 0.15886, 0.67583)]:
    P(f"{R}/BC.5.b_ge_3/coef/{n}", v, "drc-docs", "BC.html", f"BC.5 with b >= 3: {n}")
    P(f"{R}/BC.5.b_ge_3/se/{n}", s, "drc-docs", "BC.html", f"BC.5 with b >= 3: SE({n})")
P(f"{R}/BC.5.b_ge_3/sigma", 0.5311668, "drc-docs", "BC.html", "BC.5 b >= 3 residual SE (19 df)")
for n, v, s in [("b", 2.75688, 0.52461), ("c", 0.41515, 0.26309), ("d", 7.74173, 0.21415), ("e", 2.77687, 0.50938),
                ("f", 0.35672, 0.68827)]:
    P(f"{R}/BC.5/coef/{n}", v, "drc-docs", "BC.html", f"BC.5 (constraint f >= 0 inactive) {n}")
    P(f"{R}/BC.5/se/{n}", s, "drc-docs", "BC.html", f"BC.5 SE({n})")
P(f"{R}/BC.5/sigma", 0.528689, "drc-docs", "BC.html", "BC.5 residual SE (19 df)")

# ----------------------------------------------------------------------------- lettuce
L = "lettuce"
for n, v, s in [("b", 1.282812, 0.049346), ("d", 0.967302, 0.077123), ("e", 0.847633, 0.436093), ("f", 1.620703, 0.979711)]:
    P(f"{L}/BC.4/coef/{n}", v, "drc-docs", "BC.html", f"BC.4 {n}")
    P(f"{L}/BC.4/se/{n}", s, "drc-docs", "BC.html", f"BC.4 SE({n})")
P(f"{L}/BC.4/sigma", 0.1117922, "drc-docs", "BC.html", "BC.4 residual SE (10 df)")
P(f"{L}/BC.4/rss", 0.124975, "drc-help-md", "lettuce", "BC.4 RSS (modelFit)")
P(f"{L}/BC.4/ed/1/50", 35.023, "drc-docs", "BC.html", "BC.4 ED50")
P(f"{L}/BC.4/ed_se/1/50", 15.427, "drc-docs", "BC.html", "BC.4 SE(ED50)")
P(f"{L}/BC.4/ed/1/-10", 1.8646, "drc-docs", "ED.drc.html", "BC.4 ED(-10), bound = FALSE")
P(f"{L}/BC.4/ed_se/1/-10", 1.0163, "drc-docs", "ED.drc.html", "BC.4 SE(ED(-10))")
P(f"{L}/BC.4/ed/1/-20", 0.96333, "drc-docs", "ED.drc.html", "BC.4 ED(-20), bound = FALSE")
P(f"{L}/BC.4/ed_se/1/-20", 1.23014, "drc-docs", "ED.drc.html", "BC.4 SE(ED(-20))")
P(f"{L}/BC.5/rss", 0.118842, "drc-docs", "BC.html", "BC.5 RSS (modelFit 'DRC model', 9 df)")
P(f"{L}/LL.3/rss", 0.24222, "drc-help-md", "lettuce", "LL.3 RSS (anova, 11 df)")
P(f"{L}/lof_rss", 0.088237, "drc-docs", "BC.html", "one-way ANOVA RSS (7 df)")

# ----------------------------------------------------------------------------- spinach
S = "spinach"
_sp = {"b": [0.519519, 0.800796, 0.681913, 1.844809, 1.650758], "c": [-0.016595, 0.132589, 0.146406, 0.079552, -0.009066],
       "d": [1.879553, 0.946000, 1.090321, 2.153578, 1.806283], "e": [1.794955, 0.945530, 1.373023, 0.197326, 0.210793]}
for n, vals in _sp.items():
    for k, v in enumerate(vals, 1):
        P(f"{S}/LL.4.joint/coef/{n}:{k}", v, "drc-docs", "LL.4.html", f"joint LL.4 (curveid = CURVE) {n}:{k}")
_r5050 = {(1, 2): (1.8983586, 0.7118489), (1, 3): (1.3073016, 0.5541592), (1, 4): (9.0963785, 2.4686586),
          (1, 5): (8.5152294, 2.3364483), (2, 3): (0.6886484, 0.2908078), (2, 4): (4.7917071, 1.2883525),
          (2, 5): (4.4855747, 1.2196032), (3, 4): (6.9581332, 2.3220591), (3, 5): (6.5135923, 2.1896041),
          (4, 5): (0.9361120, 0.0781402)}
for (i, j), (v, s) in _r5050.items():
    P(f"{S}/LL.4.joint/edcomp/{i}/{j}/50/50/estimate", v, "drc-docs", "EDcomp.html", f"ED50 ratio {i}/{j}")
    P(f"{S}/LL.4.joint/edcomp/{i}/{j}/50/50/se", s, "drc-docs", "EDcomp.html", f"SE of ED50 ratio {i}/{j}")
_r1050 = {(1, 2): (2.7644e-02, 1.5249e-02), (1, 3): (1.9037e-02, 1.1155e-02), (1, 4): (1.3246e-01, 6.4530e-02),
          (1, 5): (1.2400e-01, 6.0615e-02), (2, 3): (4.4298e-02, 3.7850e-02), (2, 4): (3.0823e-01, 2.4349e-01),
          (2, 5): (2.8854e-01, 2.2823e-01), (3, 4): (2.7742e-01, 1.5001e-01), (3, 5): (2.5969e-01, 1.4081e-01),
          (4, 5): (2.8449e-01, 3.7366e-02)}
for (i, j), (v, s) in _r1050.items():
    P(f"{S}/LL.4.joint/edcomp/{i}/{j}/10/50/estimate", v, "drc-docs", "EDcomp.html", f"ED10({i})/ED50({j})")
    P(f"{S}/LL.4.joint/edcomp/{i}/{j}/10/50/se", s, "drc-docs", "EDcomp.html", f"SE of ED10({i})/ED50({j})")
_cpd = {(1, 2): (0.849425, 0.539400), (1, 3): (0.421932, 0.658506), (1, 4): (1.597629, 0.478341),
        (1, 5): (1.584161, 0.478432), (2, 3): (-0.427493, 0.516885), (2, 4): (0.748204, 0.249701),
        (2, 5): (0.734736, 0.249876), (3, 4): (1.175696, 0.452799), (3, 5): (1.162229, 0.452896),
        (4, 5): (-0.013467, 0.017174)}
_cpr = {(1, 2): (1.89836, 0.71185), (1, 3): (1.30730, 0.55416), (1, 4): (9.09638, 2.46866), (1, 5): (8.51523, 2.33645),
        (2, 3): (0.68865, 0.29081), (2, 4): (4.79171, 1.28835), (2, 5): (4.48557, 1.21960), (3, 4): (6.95813, 2.32206),
        (3, 5): (6.51359, 2.18960), (4, 5): (0.93611, 0.07814)}
for (i, j), (v, s) in _cpr.items():
    P(f"{S}/LL.4.joint/compparm/e/{i}/{j}/ratio", v, "drc-docs", "compParm.html", f"compParm e {i}/{j}")
    P(f"{S}/LL.4.joint/compparm/e/{i}/{j}/ratio_se", s, "drc-docs", "compParm.html", f"compParm SE e {i}/{j}")
for (i, j), (v, s) in _cpd.items():
    P(f"{S}/LL.4.joint/compparm/e/{i}/{j}/diff", v, "drc-docs", "compParm.html", f"compParm e {i}-{j}")
    P(f"{S}/LL.4.joint/compparm/e/{i}/{j}/diff_se", s, "drc-docs", "compParm.html", f"compParm SE e {i}-{j}")
for k, (v, s) in enumerate([(0.9048476, 0.02496135), (0.4208307, 0.02924987), (0.5581673, 0.03067170)], 1):
    P(f"{S}/LL.4.joint/predict/{k}/2/fit", v, "drc-docs", "predict.drc.html", f"prediction at dose 2, curve {k}")
    P(f"{S}/LL.4.joint/predict/{k}/2/se", s, "drc-docs", "predict.drc.html", f"SE of prediction at dose 2, curve {k}")
P(f"{S}/LL.4.joint/edcomp_abs/2/4/0.5/0.5/estimate", 2.9057, "drc-docs", "EDcomp.html",
  "ED ratio 2/4 at absolute response 0.5")
P(f"{S}/LL.4.joint/edcomp_abs/2/4/0.5/0.5/fieller_lo", 1.2729, "drc-docs", "EDcomp.html", "Fieller lower")
P(f"{S}/LL.4.joint/edcomp_abs/2/4/0.5/0.5/fieller_hi", 4.7264, "drc-docs", "EDcomp.html", "Fieller upper")
P(f"{S}/LL.4.joint/edcomp/2/4/55/80/estimate", 2.903797, "drc-docs", "EDcomp.html", "ED55(2)/ED80(4)")
P(f"{S}/LL.4.joint/edcomp/2/4/55/80/se", 0.855889, "drc-docs", "EDcomp.html", "SE of ED55(2)/ED80(4)")

# ----------------------------------------------------------------------------- S.alba
A = "S.alba"
P(f"{A}/LL.3.joint/edcomp/Bentazone/Glyphosate/50/50/estimate", 0.39269, "drc-docs", "EDcomp.html",
  "LL.3 (curveid = Herbicide) ED50 ratio Bentazone/Glyphosate")
P(f"{A}/LL.3.joint/edcomp/Bentazone/Glyphosate/50/50/se", 0.066243, "drc-docs", "EDcomp.html", "its SE")
P(f"{A}/LL.3.joint/edcomp/Bentazone/Glyphosate/50/50/delta_lo", 0.26028, "drc-docs", "EDcomp.html", "delta CI lower")
P(f"{A}/LL.3.joint/edcomp/Bentazone/Glyphosate/50/50/delta_hi", 0.52511, "drc-docs", "EDcomp.html", "delta CI upper")
P(f"{A}/LL.3.joint/edcomp/Bentazone/Glyphosate/50/50/fieller_lo", 0.28175, "drc-docs", "EDcomp.html", "Fieller lower")
P(f"{A}/LL.3.joint/edcomp/Bentazone/Glyphosate/50/50/fieller_hi", 0.56261, "drc-docs", "EDcomp.html", "Fieller upper")
for lab, v, s in [("b:Bentazone", 5.046141, 1.040135), ("b:Glyphosate", 2.390218, 0.495959),
                  ("c:(Intercept)", 0.716559, 0.089245), ("d:(Intercept)", 3.854861, 0.076255),
                  ("e:Bentazone", 28.632355, 2.038098), ("e:Glyphosate", 66.890545, 5.968819)]:
    P(f"{A}/LL.4.shared_cd/coef/{lab}", v, "drc-help-md", "S.alba", f"LL.4, pmodels (Herbicide, 1, 1, Herbicide): {lab}")
    P(f"{A}/LL.4.shared_cd/se/{lab}", s, "drc-help-md", "S.alba", f"SE({lab})")
P(f"{A}/LL.4.shared_cd/sigma", 0.3705151, "drc-help-md", "S.alba", "residual SE (62 df)")
P(f"{A}/LL.4.shared_cd/ed/Bentazone/50", 28.6324, "drc-docs", "maED.html", "ED50 Bentazone (ED, delta)")
P(f"{A}/LL.4.shared_cd/ed_se/Bentazone/50", 2.0381, "drc-docs", "maED.html", "SE ED50 Bentazone")
P(f"{A}/LL.4.shared_cd/ed/Glyphosate/50", 66.8905, "drc-docs", "maED.html", "ED50 Glyphosate (ED, delta)")
P(f"{A}/LL.4.shared_cd/ed_se/Glyphosate/50", 5.9688, "drc-docs", "maED.html", "SE ED50 Glyphosate")
P(f"{A}/LN.4.shared_cd/ed/Glyphosate/50", 67.18546, "drc-docs", "maED.html", "LN.4 (c, d shared) ED50 Glyphosate")
P(f"{A}/LN.4.shared_cd/ed/Bentazone/50", 28.64257, "drc-docs", "maED.html", "LN.4 (c, d shared) ED50 Bentazone")
P(f"{A}/LL.3.shared_de/ed/Glyphosate/50", 60.10951, "drc-docs", "maED.html",
  "LL.3 refit by maED with pmodels (Herbicide, 1, 1): b by herbicide, d and e shared")
P(f"{A}/maED_weight/LL.4", 0.5968947, "drc-docs", "maED.html", "AIC weight of LL.4 among LL.4/LL.3/LN.4")
P(f"{A}/maED_weight/LN.4", 0.4031053, "drc-docs", "maED.html", "AIC weight of LN.4")

# ----------------------------------------------------------------------------- G.aparine
G = "G.aparine"
for lab, v, s in [("b:1", 1.61291, 0.33330), ("b:2", 1.75100, 0.20392), ("c:1", 509.50367, 23.25885),
                  ("c:2", 151.91840, 26.00899), ("d:(Intercept)", 984.88779, 12.63335), ("e:1", 50.80009, 7.87851),
                  ("e:2", 93.44626, 8.11091)]:
    P(f"{G}/LL.4.shared_d/coef/{lab}", v, "drc-help-md", "G.aparine", f"LL.4, pmodels (treatment, treatment, 1, treatment): {lab}")
    P(f"{G}/LL.4.shared_d/se/{lab}", s, "drc-help-md", "G.aparine", f"SE({lab})")
P(f"{G}/LL.4.shared_d/sigma", 111.403, "drc-help-md", "G.aparine", "residual SE (233 df)")
P(f"{G}/LL.4.shared_d/rss", 2891677, "drc-help-md", "G.aparine", "RSS (modelFit)")
P(f"{G}/lof_rss", 2601788, "drc-help-md", "G.aparine", "one-way ANOVA RSS (219 df)")
P(f"{G}/LL.4.shared_d/edcomp/1/2/50/50/estimate", 0.54363, "drc-help-md", "G.aparine", "ED50 ratio 1/2")
P(f"{G}/LL.4.shared_d/edcomp/1/2/50/50/se", 0.093972, "drc-help-md", "G.aparine", "SE of ED50 ratio 1/2")
P(f"{G}/LL.4.shared_bd/rss", 2893283, "drc-help-md", "G.aparine", "RSS of the reduced model (common b and d), 234 df")

# ----------------------------------------------------------------------------- vinclozolin
V = "vinclozolin"
P(f"{V}/LL.3.joint/rss", 385169, "drc-help-md", "vinclozolin", "LL.3 with curveid = exper: RSS (35 df)")
P(f"{V}/LL.3.shared_e/rss", 972732, "drc-help-md", "vinclozolin", "LL.3 with common e (pmodels exper, exper, 1): RSS (40 df)")

# medrc (hierarchical); metadrm = two-stage: per-curve drm fits, then REML meta-analysis (metafor)
for n, v, s in [("b", 0.54042, 0.078816), ("d", 1968.4, 341.08), ("e", 0.10312, 0.036090)]:
    P(f"{V}/metadrm.LL.3/coef/{n}", v, "medrc-vignette", "medrc.html", f"metadrm LL.3, struct UN: {n}")
    P(f"{V}/metadrm.LL.3/se/{n}", s, "medrc-vignette", "medrc.html", f"metadrm SE({n})")
for n, v in [("b", 0.0316), ("d", 687783.0025), ("e", 0.0069)]:
    P(f"{V}/metadrm.LL.3/tau2/{n}", v, "medrc-vignette", "medrc.html", f"metadrm between-experiment variance tau^2({n})")
for (a, b_), v in [(("b", "d"), -0.8745), (("b", "e"), 0.9315), (("d", "e"), -0.6382)]:
    P(f"{V}/metadrm.LL.3/rho/{a}/{b_}", v, "medrc-vignette", "medrc.html", f"metadrm correlation rho({a},{b_})")
for p, v, s in [(15, 0.0041628, 0.0032620), (50, 0.1031209, 0.0360903), (85, 2.5545035, 0.6718647)]:
    P(f"{V}/metadrm.LL.3/ed/{p}", v, "medrc-vignette", "medrc.html", f"metadrm ED{p}")
    P(f"{V}/metadrm.LL.3/ed_se/{p}", s, "medrc-vignette", "medrc.html", f"metadrm SE(ED{p})")
for n, v, s in [("b", 0.5382, 0.0706), ("d", 1987.3050, 321.4828), ("e", 0.1014, 0.0322)]:
    P(None, v, "medrc-vignette", "medrc.html", f"vinclozolin medrm (nlme ML, random b+d+e | exper) fixed effect {n} (SE {s})")
for n, v in [("b", 0.15223468), ("d", 758.88844284), ("e", 0.06969997), ("residual", 100.08932805)]:
    P(None, v, "medrc-vignette", "medrc.html", f"vinclozolin medrm random-effect SD {n}")
P(None, -340.7461, "medrc-vignette", "medrc.html", "vinclozolin medrm logLik (AIC 701.4922)")
for p, v, s in [(15, 0.0040369, 0.0027667), (50, 0.1013631, 0.0313062), (85, 2.5451269, 0.6139681)]:
    P(None, v, "medrc-vignette", "medrc.html", f"vinclozolin medrm ED{p} (SE {s})")
for lab, v, s in [("b:bentazon", 0.5021926, 0.0252658), ("b:diuron", 1.6572431, 0.1154678),
                  ("d:bentazon", 1.3091412, 0.2495357), ("d:diuron", 1.9858581, 0.3056732),
                  ("e:bentazon", 1.7452319, 0.1716524), ("e:diuron", 0.2086242, 0.0091462)]:
    P(f"{S}/metadrm.LL.3/coef/{lab}", v, "medrc-vignette", "medrc.html", f"spinach metadrm LL.3 by HERBICIDE: {lab}")
    P(f"{S}/metadrm.LL.3/se/{lab}", s, "medrc-vignette", "medrc.html", f"spinach metadrm SE({lab})")
for lab, v, s in [("b:bentazon", 0.5028197, 0.02830093), ("b:diuron", 1.6587325, 0.08678366),
                  ("d:bentazon", 1.3105896, 0.19737050), ("d:diuron", 1.9859080, 0.24078961),
                  ("e:bentazon", 1.8477691, 0.20496373), ("e:diuron", 0.2085488, 0.00749736)]:
    P(None, v, "medrc-vignette", "medrc.html", f"spinach medrm (nlme ML, random b+d+e | CURVE) fixed effect {lab} (SE {s})")
for n, v in [("b", 1.936461e-02), ("d", 3.294869e-01), ("e", 4.173550e-12), ("residual", 7.278869e-02)]:
    P(None, v, "medrc-vignette", "medrc.html", f"spinach medrm random-effect SD {n}")
P(None, 113.4561, "medrc-vignette", "medrc.html", "spinach medrm logLik (AIC -200.9121)")
for p, v, lo, hi in [(15, 0.75332, 0.40454, 1.15956), (50, 8.36543, 6.39896, 10.49810), (85, 92.89635, 49.81637, 143.18800)]:
    P(f"{S}/metadrm.LL.3/edratio/{p}", v, "medrc-vignette", "medrc.html",
      f"spinach metadrm ED{p} ratio bentazon/diuron (Fieller {lo}-{hi})")
for p, v, lo, hi in [(15, 0.80056, 0.39510, 1.23745), (50, 8.86013, 6.90605, 10.89971), (85, 98.05903, 63.37847, 135.24172)]:
    P(None, v, "medrc-vignette", "medrc.html", f"spinach medrm ED{p} ratio bentazon/diuron (Fieller {lo}-{hi})")

PUBLISHED = _P

# Found but not used: pages whose "drc output" contradicts drc's own printed output for the same call
# (they look generated rather than run); kept here so nobody re-imports them as references.
REJECTED = [
    {"where": "https://r-statistics.co/Dose-Response-Analysis-in-R.html (pages corpus)",
     "claims": "ryegrass LL.4: b 2.4780 (SE 0.3426), c 0.4842, d 7.7934 (SE 0.2154), e 3.0585 (SE 0.1926), RSE 0.5286",
     "why": "drc's own print.summary.drc example gives b 2.98222 (0.46506), d SE 0.18857, RSE 0.5196256 for the same call; "
            "b 2.478 is close to the LL.3 slope (2.47033)"},
    {"where": "tutorial markdown in the stored code index (file id 62010904864)",
     "claims": "S.alba LL.4 by Herbicide: e:Glyphosate 0.07176, b:Glyphosate 4.18854, c:Glyphosate 2.47021",
     "why": "glyphosate doses are 10-320 g/ha with a clear decline; our fit and drc's documented fits give ED50 ~ 62-67"},
]
