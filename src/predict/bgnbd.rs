//! The BG/NBD model (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy
//! Way"): purchases at Poisson rate λ ~ Gamma(r, alpha) while alive, and after each
//! purchase the member drops out with probability p ~ Beta(a, b).
//!
//! Owns the per-member formulas (log-likelihood, P(alive), conditional expected
//! purchases) and the maximum-likelihood fit. The fit evaluates the likelihood of a
//! million members hundreds of times, so it precomputes everything that depends only
//! on x (the log-gamma terms) or only on a time value (ln(alpha + t), over the
//! distinct t_x and T values) once per evaluation, leaving an exp and a log1p per
//! repeat buyer, summed in fixed chunks on rayon so the result is deterministic.

use serde::{Deserialize, Serialize};

use super::history::PurchaseHistory;
use super::optimise::{bfgs, nelder_mead, Minimum, OptimiseError, Tolerance};
use super::special::{digamma, hyp2f1, hypergeometric_tail, ln_gamma, log_add_exp, logistic};
use super::{chunked_sum, FitOptions, PredictError};

/// BG/NBD parameters. `alpha` is in the fit's time unit; r, a, b have no unit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbdParams {
    /// The log-likelihood of one member's (x, t_x, T), eq. (6) of the paper,
    /// written as in lifetimes: A1 + A2 + ln(e^A3 + δ(x>0) e^A4).
    pub fn log_likelihood(&self, h: &PurchaseHistory) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let x = h.frequency;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + h.age).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + h.recency).ln();
            a1 + a2 + log_add_exp(a3, a4)
        } else {
            a1 + a2 + a3
        }
    }

    /// P(alive | x, t_x, T), eq. (11): 1 for a member with no repeat purchase.
    pub fn p_alive(&self, h: &PurchaseHistory) -> f64 {
        if h.frequency <= 0.0 {
            return 1.0;
        }
        logistic(-self.log_odds_dead(h))
    }

    /// ln of P(dead) / P(alive): ln(a / (b + x - 1)) + (r + x) ln((alpha + T) / (alpha + t_x)).
    fn log_odds_dead(&self, h: &PurchaseHistory) -> f64 {
        let x = h.frequency;
        (self.a / (self.b + x - 1.0)).ln()
            + (self.r + x) * ((self.alpha + h.age) / (self.alpha + h.recency)).ln()
    }

    /// E[purchases in (T, T + t] | x, t_x, T], eq. (10), with `t` in the fit's unit.
    ///
    /// Computed as (a+b+x-1)/(a-1) · [1 - ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)]
    /// · P(alive), z = t/(α+T+t). For t ≤ (α+T)/2 the bracket is summed through Pfaff's
    /// transformation, 1 - 2F1(r+x, a-1; a+b+x-1; -t/(α+T)), whose terms all carry the
    /// factor (a-1): dividing it out analytically avoids the cancellation for short
    /// horizons and the 0/0 at a = 1. Longer horizons use Euler's transformation,
    /// which keeps the series short and finite for members with many purchases.
    pub fn expected_purchases(&self, h: &PurchaseHistory, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        let Self { r, alpha, a, b } = *self;
        let x = h.frequency;
        let (big_a, big_c) = (r + x, a + b + x - 1.0);
        let w = t / (alpha + h.age);
        let unconditional = if w <= 0.5 {
            // 1 - 2F1(A, a-1; C; -w) = -(a-1) Σ_{n≥1} τ_n / (a-1)
            let tail_over = hypergeometric_tail(big_a, a - 1.0, big_c, -w, big_a / big_c * -w);
            -big_c * tail_over
        } else {
            // Euler: (1-z)^A 2F1(A, b+x; C; z) = (1-z)^(a-1) 2F1(C-A, a-1; C; z), whose
            // terms shrink like n^(a-2-r-x) z^n instead of growing like n^(r+x-a) z^n.
            let z = t / (alpha + h.age + t);
            let scaled = (a - 1.0) * (1.0 - z).ln() + hyp2f1(big_c - big_a, a - 1.0, big_c, z).ln();
            big_c / (a - 1.0) * -scaled.exp_m1()
        };
        unconditional * self.p_alive(h)
    }
}

/// A fitted BG/NBD model with what the fit saw.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BgNbdFit {
    pub params: BgNbdParams,
    /// Total log-likelihood at the optimum (sum over members).
    pub log_likelihood: f64,
    pub members: usize,
    pub repeat_buyers: usize,
    pub evaluations: usize,
}

/// The members as the fast likelihood reads them.
struct FitData {
    x: Vec<u32>,
    recency_at: Vec<u32>,
    age_at: Vec<u32>,
    /// Distinct t_x and T values; the `_at` vectors index into it.
    times: Vec<f64>,
    /// Members by repeat purchases x = 0, 1, ..., max x.
    count_by_x: Vec<f64>,
}

impl FitData {
    fn new(histories: &[PurchaseHistory]) -> FitData {
        let mut times: Vec<f64> = histories.iter().flat_map(|h| [h.recency, h.age]).collect();
        times.sort_unstable_by(f64::total_cmp);
        times.dedup();
        let at = |t: f64| times.partition_point(|&v| v < t) as u32;
        let x: Vec<u32> = histories.iter().map(|h| h.frequency as u32).collect();
        let mut count_by_x = vec![0.0; x.iter().copied().max().unwrap_or(0) as usize + 1];
        x.iter().for_each(|&xi| count_by_x[xi as usize] += 1.0);
        FitData {
            recency_at: histories.iter().map(|h| at(h.recency)).collect(),
            age_at: histories.iter().map(|h| at(h.age)).collect(),
            x,
            times,
            count_by_x,
        }
    }

    /// Σ log-likelihood over all members, and its gradient with respect to
    /// (r, alpha, a, b) written into `grad`.
    ///
    /// Per member LL = A1 + A2 + ln(e^A3 + δ(x>0) e^A4) (see [`BgNbdParams::log_likelihood`]);
    /// A1 and A2 depend only on x and are added once per x with their member counts.
    /// With w4 = e^A4 / (e^A3 + e^A4) the weight of the "dropped out after the last
    /// purchase" branch, the mixture term's derivatives are
    /// d/dr = -(w3 ln(α+T) + w4 ln(α+t_x)), d/dα = -(r+x)(w3/(α+T) + w4/(α+t_x)),
    /// d/da = w4/a, d/db = -w4/(b+x-1).
    fn log_likelihood(&self, p: &BgNbdParams, grad: &mut [f64; 4]) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *p;
        let ln_alpha_plus: Vec<f64> = self.times.iter().map(|t| (alpha + t).ln()).collect();
        let inv_alpha_plus: Vec<f64> = self.times.iter().map(|t| 1.0 / (alpha + t)).collect();
        let max_x = self.count_by_x.len();
        let ln_odds: Vec<f64> = (0..max_x)
            .map(|x| a.ln() - (b + x as f64 - 1.0).ln())
            .collect();
        let inv_b_x_1: Vec<f64> = (0..max_x).map(|x| 1.0 / (b + x as f64 - 1.0)).collect();
        let [mix, d_r, d_alpha, w4_sum, d_b] = chunked_sum(self.x.len(), |range| {
            let mut s = [0.0; 5];
            for i in range {
                let xi = self.x[i] as usize;
                let rx = r + xi as f64;
                let (at_t, at_tx) = (self.age_at[i] as usize, self.recency_at[i] as usize);
                let a3 = -rx * ln_alpha_plus[at_t];
                if xi == 0 {
                    s[0] += a3;
                    s[1] -= ln_alpha_plus[at_t];
                    s[2] -= rx * inv_alpha_plus[at_t];
                    continue;
                }
                let a4 = ln_odds[xi] - rx * ln_alpha_plus[at_tx];
                let d = a4 - a3;
                let e = (-d.abs()).exp();
                let w4 = if d > 0.0 {
                    1.0 / (1.0 + e)
                } else {
                    e / (1.0 + e)
                };
                let w3 = 1.0 - w4;
                s[0] += a3.max(a4) + e.ln_1p();
                s[1] -= w3 * ln_alpha_plus[at_t] + w4 * ln_alpha_plus[at_tx];
                s[2] -= rx * (w3 * inv_alpha_plus[at_t] + w4 * inv_alpha_plus[at_tx]);
                s[3] += w4;
                s[4] -= w4 * inv_b_x_1[xi];
            }
            s
        });
        let n = self.x.len() as f64;
        let (psi_r, psi_b, psi_ab) = (digamma(r), digamma(b), digamma(a + b));
        let common = r * alpha.ln() - ln_gamma(r) + ln_gamma(a + b) - ln_gamma(b);
        let mut total = mix + n * common;
        *grad = [
            d_r + n * (alpha.ln() - psi_r),
            d_alpha + n * r / alpha,
            w4_sum / a,
            d_b,
        ];
        for (x, &count) in self.count_by_x.iter().enumerate() {
            if count == 0.0 {
                continue;
            }
            let x = x as f64;
            total += count * (ln_gamma(r + x) + ln_gamma(b + x) - ln_gamma(a + b + x));
            let psi_abx = digamma(a + b + x);
            grad[0] += count * digamma(r + x);
            grad[2] += count * (psi_ab - psi_abx);
            grad[3] += count * (psi_ab + digamma(b + x) - psi_b - psi_abx);
        }
        total
    }
}

/// Fits (r, alpha, a, b) by maximum likelihood, in log-parameter space: BFGS on the
/// analytic gradient, Nelder-Mead from the start if BFGS fails.
pub(crate) fn fit(
    histories: &[PurchaseHistory],
    options: &FitOptions,
) -> Result<BgNbdFit, PredictError> {
    let members = histories.len();
    let repeat_buyers = histories.iter().filter(|h| h.frequency > 0.0).count();
    if members < options.min_members {
        return Err(PredictError::TooFewMembers {
            members,
            minimum: options.min_members,
        });
    }
    if repeat_buyers < options.min_repeat_buyers {
        return Err(PredictError::TooFewRepeatBuyers {
            repeat_buyers,
            minimum: options.min_repeat_buyers,
        });
    }
    if repeat_buyers == members {
        return Err(PredictError::Unidentified {
            model: "BG/NBD",
            reason:
                "every member is a repeat buyer, so nothing separates dropout from purchase rate"
                    .into(),
        });
    }
    let data = FitData::new(histories);
    let n = members as f64;
    let params_of = |theta: &[f64]| BgNbdParams {
        r: theta[0].exp(),
        alpha: theta[1].exp(),
        a: theta[2].exp(),
        b: theta[3].exp(),
    };
    // Minimise the negative mean log-likelihood; d/dθ = p · d/dp for θ = ln p.
    let objective = |theta: &[f64], grad: &mut [f64]| {
        let p = params_of(theta);
        let mut g = [0.0; 4];
        let ll = data.log_likelihood(&p, &mut g);
        for (i, pi) in [p.r, p.alpha, p.a, p.b].into_iter().enumerate() {
            grad[i] = -g[i] * pi / n;
        }
        -ll / n
    };
    // Start from r = 1 and alpha matching the observed purchase rate, a = b = 1.
    let mean_x = histories.iter().map(|h| h.frequency).sum::<f64>() / n;
    let mean_age = histories.iter().map(|h| h.age).sum::<f64>() / n;
    let alpha0 = (mean_age.max(1e-3) / mean_x.max(1e-2)).clamp(1e-3, 1e6);
    let start = [0.0, alpha0.ln(), 0.0, 0.0];
    let minimum = minimise("BG/NBD", objective, &start, options)?;
    let params = params_of(&minimum.x);
    check_bounded(
        "BG/NBD",
        &[
            ("r", minimum.x[0]),
            ("alpha", minimum.x[1]),
            ("a", minimum.x[2]),
            ("b", minimum.x[3]),
        ],
    )?;
    Ok(BgNbdFit {
        params,
        log_likelihood: -minimum.value * n,
        members,
        repeat_buyers,
        evaluations: minimum.evaluations,
    })
}

/// BFGS, and Nelder-Mead on the same objective when BFGS does not converge. Both
/// see a wall (+inf) where a log-parameter passes ±[`LOG_PARAM_WALL`], so a
/// likelihood that keeps rising towards 0 or infinity ends at the wall, where
/// [`check_bounded`] reports it.
pub(crate) fn minimise(
    model: &'static str,
    mut unbounded: impl FnMut(&[f64], &mut [f64]) -> f64,
    start: &[f64],
    options: &FitOptions,
) -> Result<Minimum, PredictError> {
    let mut objective = |theta: &[f64], grad: &mut [f64]| {
        if theta.iter().any(|t| t.abs() > LOG_PARAM_WALL) {
            return f64::INFINITY;
        }
        unbounded(theta, grad)
    };
    match bfgs(
        &mut objective,
        start,
        options.tolerance,
        options.max_evaluations,
    ) {
        Ok(m) => Ok(m),
        Err(_) => {
            let mut grad = vec![0.0; start.len()];
            let tolerance = Tolerance {
                f_abs: options.tolerance * 1e-2,
                x_abs: 1e-7,
                max_evaluations: options.max_evaluations,
            };
            nelder_mead(|theta| objective(theta, &mut grad), start, 1.0, tolerance)
                .map_err(|e| optimise_error(model, e))
        }
    }
}

/// Log-parameters beyond this mean the optimum lies at 0 or infinity: the data
/// cannot identify the model.
const LOG_PARAM_LIMIT: f64 = 25.0;
/// The optimisers do not look beyond this.
const LOG_PARAM_WALL: f64 = 30.0;

pub(crate) fn check_bounded(
    model: &'static str,
    log_params: &[(&'static str, f64)],
) -> Result<(), PredictError> {
    for &(name, value) in log_params {
        if !value.is_finite() || value.abs() > LOG_PARAM_LIMIT {
            return Err(PredictError::Unidentified {
                model,
                reason: format!("parameter {name} ran off to {:e}", value.exp()),
            });
        }
    }
    Ok(())
}

pub(crate) fn optimise_error(model: &'static str, e: OptimiseError) -> PredictError {
    match e {
        OptimiseError::NotConverged { evaluations } => {
            PredictError::NotConverged { model, evaluations }
        }
        OptimiseError::NonFiniteStart => PredictError::Unidentified {
            model,
            reason: "the likelihood is not finite at the starting point".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDNOW: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    fn h(x: f64, tx: f64, t: f64) -> PurchaseHistory {
        PurchaseHistory {
            frequency: x,
            recency: tx,
            age: t,
            mean_repeat_value: 0.0,
        }
    }

    /// The likelihood straight from the paper's eq. (6), without logs.
    fn paper_likelihood(p: &BgNbdParams, m: &PurchaseHistory) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *p;
        let x = m.frequency;
        let g = |v: f64| ln_gamma(v);
        let beta = |u: f64, v: f64| (g(u) + g(v) - g(u + v)).exp();
        let part = (g(r + x) - g(r)).exp() * alpha.powf(r);
        let alive = beta(a, b + x) / beta(a, b) / (alpha + m.age).powf(r + x);
        let dead = if x > 0.0 {
            beta(a + 1.0, b + x - 1.0) / beta(a, b) / (alpha + m.recency).powf(r + x)
        } else {
            0.0
        };
        part * (alive + dead)
    }

    #[test]
    fn log_likelihood_matches_paper_formula_on_edge_cases() {
        // x = 0; t_x = T; t_x = 0 with x > 0 (same-day only cannot happen, but the
        // formula must hold); long-lived members; large x.
        let cases = [
            h(0.0, 0.0, 38.86),
            h(0.0, 0.0, 0.0),
            h(2.0, 30.43, 38.86),
            h(5.0, 20.0, 20.0),
            h(1.0, 0.0, 10.0),
            h(3.0, 1.0, 500.0),
            h(30.0, 70.0, 78.0),
        ];
        for m in cases {
            let got = CDNOW.log_likelihood(&m);
            let want = paper_likelihood(&CDNOW, &m).ln();
            assert!(
                (got - want).abs() < 1e-10 * want.abs().max(1.0),
                "{m:?}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn log_likelihood_stays_finite_where_the_plain_formula_underflows() {
        // T = 1e9 units, x = 200: Γ(r+x) overflows and (alpha + T)^-(r+x) underflows
        // in plain arithmetic, which gives no usable number.
        let m = h(200.0, 1e9 - 1.0, 1e9);
        let plain = paper_likelihood(&CDNOW, &m);
        assert!(!(plain > 0.0 && plain.is_finite()), "{plain}");
        let ll = CDNOW.log_likelihood(&m);
        assert!(ll.is_finite() && ll < -1000.0, "{ll}");
        // A huge T with x = 0 and with recency far behind: the dead branch dominates.
        let m = h(3.0, 1.0, 1e12);
        let dead_only = (ln_gamma(CDNOW.r + 3.0) - ln_gamma(CDNOW.r) + CDNOW.r * CDNOW.alpha.ln())
            + ln_gamma(CDNOW.a + CDNOW.b)
            - ln_gamma(CDNOW.a)
            - ln_gamma(CDNOW.b)
            + ln_gamma(CDNOW.a + 1.0)
            + ln_gamma(CDNOW.b + 2.0)
            - ln_gamma(CDNOW.a + CDNOW.b + 3.0)
            - (CDNOW.r + 3.0) * (CDNOW.alpha + 1.0).ln();
        assert!((CDNOW.log_likelihood(&m) - dead_only).abs() < 1e-9);
        assert!(CDNOW.log_likelihood(&h(0.0, 0.0, 1e300)).is_finite());
    }

    #[test]
    fn fast_likelihood_equals_the_per_member_sum() {
        let members = vec![
            h(0.0, 0.0, 38.86),
            h(2.0, 30.43, 38.86),
            h(1.0, 1.71, 38.86),
            h(0.0, 0.0, 32.0),
            h(7.0, 29.0, 32.0),
            h(1.0, 32.0, 32.0),
            h(2.0, 30.43, 36.0),
        ];
        let data = FitData::new(&members);
        for p in [
            CDNOW,
            BgNbdParams {
                r: 2.0,
                alpha: 0.5,
                a: 3.0,
                b: 0.2,
            },
        ] {
            let direct: f64 = members.iter().map(|m| p.log_likelihood(m)).sum();
            assert!(
                (data.log_likelihood(&p, &mut [0.0; 4]) - direct).abs() < 1e-10,
                "{p:?}"
            );
            // The gradient against central differences of the per-member sum.
            let mut grad = [0.0; 4];
            data.log_likelihood(&p, &mut grad);
            let at = |i: usize, h: f64| {
                let mut v = [p.r, p.alpha, p.a, p.b];
                v[i] += h;
                let q = BgNbdParams {
                    r: v[0],
                    alpha: v[1],
                    a: v[2],
                    b: v[3],
                };
                members.iter().map(|m| q.log_likelihood(m)).sum::<f64>()
            };
            for (i, value) in [p.r, p.alpha, p.a, p.b].into_iter().enumerate() {
                let h = 1e-6 * value;
                let numeric = (at(i, h) - at(i, -h)) / (2.0 * h);
                assert!(
                    (grad[i] - numeric).abs() < 1e-6 * numeric.abs().max(1.0),
                    "{p:?} d{i}: {} vs {numeric}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn p_alive_edge_cases() {
        assert_eq!(CDNOW.p_alive(&h(0.0, 0.0, 50.0)), 1.0);
        // bought at the very end: only a/(b+x-1) keeps it below 1
        let at_end = CDNOW.p_alive(&h(3.0, 20.0, 20.0));
        assert!((at_end - 1.0 / (1.0 + CDNOW.a / (CDNOW.b + 2.0))).abs() < 1e-15);
        // silent for ages: practically dead, without NaN
        let gone = CDNOW.p_alive(&h(50.0, 1.0, 1e9));
        assert!((0.0..1e-100).contains(&gone));
    }

    #[test]
    fn expected_purchases_branches_agree_and_limits_hold() {
        let m = h(2.0, 30.43, 38.86);
        // The two formulas on each side of w = 1/2 meet: compare the Pfaff branch just
        // below the switch with the direct series just above it, by continuity.
        let t_switch = 0.5 * (CDNOW.alpha + m.age);
        let below = CDNOW.expected_purchases(&m, t_switch * (1.0 - 1e-9));
        let above = CDNOW.expected_purchases(&m, t_switch * (1.0 + 1e-9));
        assert!((below - above).abs() < 1e-7 * below, "{below} vs {above}");
        // Zero horizon, and growth with the horizon.
        assert_eq!(CDNOW.expected_purchases(&m, 0.0), 0.0);
        let mut last = 0.0;
        for t in [0.01, 1.0, 10.0, 39.0, 100.0, 1000.0] {
            let e = CDNOW.expected_purchases(&m, t);
            assert!(e > last, "t={t}: {e} <= {last}");
            last = e;
        }
        // Short horizon: purchases ≈ P(alive) · E[λ | data] · t, E[λ] = (r+x)/(α+T).
        let t = 1e-6;
        let rate = (CDNOW.r + 2.0) / (CDNOW.alpha + m.age);
        let e = CDNOW.expected_purchases(&m, t);
        assert!(
            (e / (CDNOW.p_alive(&m) * rate * t) - 1.0).abs() < 1e-5,
            "{e}"
        );
        // Very frequent buyers over long horizons stay finite: rate (r+x)/(α+T) times
        // a horizon discounted by dropout, so below rate · t.
        let heavy = h(2000.0, 77.0, 78.0);
        let e = CDNOW.expected_purchases(&heavy, 1000.0);
        let bound = (CDNOW.r + 2000.0) / (CDNOW.alpha + 78.0) * 1000.0;
        assert!(
            e.is_finite() && e > 0.0 && e < bound,
            "{e} vs bound {bound}"
        );
        // a = 1 exactly is a removable singularity in the Pfaff branch.
        let p1 = BgNbdParams { a: 1.0, ..CDNOW };
        assert!(p1.expected_purchases(&m, 5.0).is_finite());
    }
}
