//! The Gamma-Gamma model of spend per purchase (Fader, Hardie & Lee 2005, "RFM and
//! CLV"; Fader & Hardie's note "The Gamma-Gamma Model of Monetary Value"): each
//! purchase's spend is Gamma(p, ν), ν ~ Gamma(q, v) across members. Read through the
//! mean spend m of a member's x repeat purchases.
//!
//! Owns the per-member log-likelihood, the conditional expected spend per purchase
//! and the maximum-likelihood fit, which uses only repeat buyers with positive spend
//! (the model is of spend given a purchase; first purchases are left out as in the
//! papers and lifetimes).

use serde::{Deserialize, Serialize};

use super::bgnbd::{check_bounded, minimise};
use super::history::PurchaseHistory;
use super::special::{digamma, ln_gamma};
use super::{chunked_sum, FitOptions, PredictError};

/// Gamma-Gamma parameters; `v` is in currency units, p and q have none.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaParams {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

impl GammaGammaParams {
    /// ln f(m | x): the density of the mean m of x purchases' spend.
    pub fn log_likelihood(&self, frequency: f64, mean_value: f64) -> f64 {
        let Self { p, q, v } = *self;
        let (x, m) = (frequency, mean_value);
        let px = p * x;
        ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q)
            + q * v.ln()
            + (px - 1.0) * m.ln()
            + px * x.ln()
            - (px + q) * (x * m + v).ln()
    }

    /// E[spend per purchase | x, m] = p (v + x m) / (p x + q - 1), in currency units;
    /// the population mean p v / (q - 1) for a member without repeat purchases.
    pub fn expected_spend(&self, h: &PurchaseHistory) -> f64 {
        let Self { p, q, v } = *self;
        let x = h.frequency;
        let m = if x > 0.0 { h.mean_repeat_value } else { 0.0 };
        p * (v + x * m) / (p * x + q - 1.0)
    }
}

/// A fitted Gamma-Gamma model with what the fit saw.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GammaGammaFit {
    pub params: GammaGammaParams,
    /// Total log-likelihood at the optimum (sum over the repeat buyers used).
    pub log_likelihood: f64,
    /// Repeat buyers with positive mean spend: the members the fit used.
    pub repeat_buyers: usize,
    pub evaluations: usize,
}

struct FitData {
    x: Vec<u32>,
    mean: Vec<f64>,
    /// Repeat buyers by x = 0, 1, ..., max x (x = 0 never occurs).
    count_by_x: Vec<f64>,
    /// Σ ln m and Σ x ln m: parameter-free parts of the likelihood.
    sum_ln_mean: f64,
    sum_x_ln_mean: f64,
}

impl FitData {
    fn new(used: &[&PurchaseHistory]) -> FitData {
        let x: Vec<u32> = used.iter().map(|h| h.frequency as u32).collect();
        let mut count_by_x = vec![0.0; x.iter().copied().max().unwrap_or(0) as usize + 1];
        x.iter().for_each(|&xi| count_by_x[xi as usize] += 1.0);
        FitData {
            sum_ln_mean: used.iter().map(|h| h.mean_repeat_value.ln()).sum(),
            sum_x_ln_mean: used
                .iter()
                .map(|h| h.frequency * h.mean_repeat_value.ln())
                .sum(),
            mean: used.iter().map(|h| h.mean_repeat_value).collect(),
            x,
            count_by_x,
        }
    }

    /// Σ log-likelihood and its gradient with respect to (p, q, v) in `grad`.
    /// Per member, with L = ln(x m + v):
    /// LL = lnΓ(px+q) - lnΓ(px) - lnΓ(q) + q ln v + px ln x + (px-1) ln m - (px+q) L;
    /// d/dp = x (ψ(px+q) - ψ(px) + ln x + ln m - L); d/dq = ψ(px+q) - ψ(q) + ln v - L;
    /// d/dv = q/v - (px+q)/(x m + v). Terms in x alone are added once per x.
    fn log_likelihood(&self, params: &GammaGammaParams, grad: &mut [f64; 3]) -> f64 {
        let GammaGammaParams { p, q, v } = *params;
        let [sum_x_l, sum_l, sum_ratio] = chunked_sum(self.x.len(), |range| {
            let mut s = [0.0; 3];
            for i in range {
                let x = f64::from(self.x[i]);
                let xm_v = x * self.mean[i] + v;
                let l = xm_v.ln();
                s[0] += x * l;
                s[1] += l;
                s[2] += (p * x + q) / xm_v;
            }
            s
        });
        let n = self.x.len() as f64;
        let (psi_q, ln_v) = (digamma(q), v.ln());
        let mut total = n * (q * ln_v - ln_gamma(q)) + p * self.sum_x_ln_mean
            - self.sum_ln_mean
            - p * sum_x_l
            - q * sum_l;
        *grad = [
            self.sum_x_ln_mean - sum_x_l,
            n * (ln_v - psi_q) - sum_l,
            n * q / v - sum_ratio,
        ];
        for (x, &count) in self.count_by_x.iter().enumerate().skip(1) {
            if count == 0.0 {
                continue;
            }
            let x = x as f64;
            let px = p * x;
            total += count * (ln_gamma(px + q) - ln_gamma(px) + px * x.ln());
            let psi_pxq = digamma(px + q);
            grad[0] += count * x * (psi_pxq - digamma(px) + x.ln());
            grad[1] += count * psi_pxq;
        }
        total
    }
}

/// Fits (p, q, v) by maximum likelihood on the members with x > 0 and positive
/// mean repeat spend. Fails when the fitted q ≤ 1 (expected spend is infinite).
pub(crate) fn fit(
    histories: &[PurchaseHistory],
    options: &FitOptions,
) -> Result<GammaGammaFit, PredictError> {
    let used: Vec<&PurchaseHistory> = histories
        .iter()
        .filter(|h| h.frequency > 0.0 && h.mean_repeat_value > 0.0)
        .collect();
    let repeat_buyers = used.len();
    if repeat_buyers < options.min_repeat_buyers {
        return Err(PredictError::TooFewRepeatBuyers {
            repeat_buyers,
            minimum: options.min_repeat_buyers,
        });
    }
    let data = FitData::new(&used);
    let n = repeat_buyers as f64;
    let params_of = |theta: &[f64]| GammaGammaParams {
        p: theta[0].exp(),
        q: theta[1].exp(),
        v: theta[2].exp(),
    };
    let objective = |theta: &[f64], grad: &mut [f64]| {
        let params = params_of(theta);
        let mut g = [0.0; 3];
        let ll = data.log_likelihood(&params, &mut g);
        for (i, pi) in [params.p, params.q, params.v].into_iter().enumerate() {
            grad[i] = -g[i] * pi / n;
        }
        -ll / n
    };
    // Start at p = 1, q = 2 and v such that the population mean p v / (q - 1)
    // equals the observed mean spend.
    let mean_spend = data.mean.iter().sum::<f64>() / n;
    let start = [0.0, 2f64.ln(), mean_spend.ln()];
    let minimum = minimise("Gamma-Gamma", objective, &start, options)?;
    check_bounded(
        "Gamma-Gamma",
        &[
            ("p", minimum.x[0]),
            ("q", minimum.x[1]),
            ("v", minimum.x[2]),
        ],
    )?;
    let params = params_of(&minimum.x);
    if params.q <= 1.0 {
        return Err(PredictError::Unidentified {
            model: "Gamma-Gamma",
            reason: format!(
                "fitted q = {:.4} <= 1, so the expected spend per purchase is infinite",
                params.q
            ),
        });
    }
    Ok(GammaGammaFit {
        params,
        log_likelihood: -minimum.value * n,
        repeat_buyers,
        evaluations: minimum.evaluations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDNOW: GammaGammaParams = GammaGammaParams {
        p: 6.25,
        q: 3.74,
        v: 15.44,
    };

    #[test]
    fn density_integrates_to_one() {
        // ∫ f(m | x) dm over (0, ∞) by the trapezoid rule on a log grid, for a few x.
        for x in [1.0, 2.0, 7.0] {
            let (lo, hi, steps) = (-12f64, 12f64, 200_000);
            let dl = (hi - lo) / steps as f64;
            let total: f64 = (0..=steps)
                .map(|i| {
                    let l = lo + i as f64 * dl;
                    let m = l.exp();
                    let w = if i == 0 || i == steps { 0.5 } else { 1.0 };
                    w * (CDNOW.log_likelihood(x, m)).exp() * m * dl
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-6, "x={x}: {total}");
        }
    }

    #[test]
    fn fast_likelihood_and_gradient_match_the_per_member_formula() {
        let members: Vec<PurchaseHistory> = [
            (1.0, 20.0),
            (2.0, 35.5),
            (2.0, 3.1),
            (7.0, 80.0),
            (1.0, 0.5),
        ]
        .iter()
        .map(|&(x, m)| PurchaseHistory {
            frequency: x,
            recency: 1.0,
            age: 2.0,
            mean_repeat_value: m,
        })
        .collect();
        let refs: Vec<&PurchaseHistory> = members.iter().collect();
        let data = FitData::new(&refs);
        let direct = |g: &GammaGammaParams| {
            members
                .iter()
                .map(|h| g.log_likelihood(h.frequency, h.mean_repeat_value))
                .sum::<f64>()
        };
        for params in [
            CDNOW,
            GammaGammaParams {
                p: 0.7,
                q: 1.2,
                v: 300.0,
            },
        ] {
            let mut grad = [0.0; 3];
            let fast = data.log_likelihood(&params, &mut grad);
            assert!((fast - direct(&params)).abs() < 1e-10, "{params:?}");
            for (i, value) in [params.p, params.q, params.v].into_iter().enumerate() {
                let h = 1e-6 * value;
                let mut v = [params.p, params.q, params.v];
                v[i] += h;
                let up = direct(&GammaGammaParams {
                    p: v[0],
                    q: v[1],
                    v: v[2],
                });
                v[i] -= 2.0 * h;
                let down = direct(&GammaGammaParams {
                    p: v[0],
                    q: v[1],
                    v: v[2],
                });
                let numeric = (up - down) / (2.0 * h);
                assert!(
                    (grad[i] - numeric).abs() < 1e-6 * numeric.abs().max(1.0),
                    "{params:?} d{i}: {} vs {numeric}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn expected_spend_shrinks_towards_population_mean() {
        let population = CDNOW.p * CDNOW.v / (CDNOW.q - 1.0);
        let none = PurchaseHistory {
            frequency: 0.0,
            recency: 0.0,
            age: 10.0,
            mean_repeat_value: 0.0,
        };
        assert!((CDNOW.expected_spend(&none) - population).abs() < 1e-12);
        let mut last_gap = f64::INFINITY;
        for x in [1.0, 2.0, 5.0, 50.0] {
            let h = PurchaseHistory {
                frequency: x,
                recency: 5.0,
                age: 10.0,
                mean_repeat_value: 100.0,
            };
            let e = CDNOW.expected_spend(&h);
            assert!(e > population && e < 100.0, "x={x}: {e}");
            assert!(
                100.0 - e < last_gap,
                "more purchases must pull towards the member's own mean"
            );
            last_gap = 100.0 - e;
        }
    }
}
