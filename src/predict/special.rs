//! Special functions the two models need: log-gamma, log-sum-exp and the Gauss
//! hypergeometric series behind BG/NBD's conditional expected purchases.
//!
//! Kept apart so each can be tested against known values on its own; std has no
//! stable `ln_gamma`, so it comes from `libm` (a port of musl's, accurate to ~1 ulp).

/// ln Γ(x) for x > 0.
pub(crate) fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// The digamma function ψ(x) = d/dx ln Γ(x), for x > 0: the recurrence
/// ψ(x) = ψ(x + 1) - 1/x up to x >= 10, then the asymptotic series.
pub(crate) fn digamma(x: f64) -> f64 {
    let mut shift = 0.0;
    let mut x = x;
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let inv2 = 1.0 / (x * x);
    // ln x - 1/(2x) - Σ B_2k / (2k x^2k)
    let series = inv2
        * (1.0 / 12.0
            - inv2
                * (1.0 / 120.0
                    - inv2
                        * (1.0 / 252.0
                            - inv2
                                * (1.0 / 240.0
                                    - inv2 * (1.0 / 132.0 - inv2 * (691.0 / 32760.0))))));
    shift + x.ln() - 0.5 / x - series
}

/// ln(e^a + e^b) without overflow or underflow.
pub(crate) fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// The logistic function 1 / (1 + e^-x), stable for large |x|.
pub(crate) fn logistic(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Relative size below which a series term no longer changes the sum.
const SERIES_TOLERANCE: f64 = 1e-17;
/// Series longer than this are abandoned (only reached for z within ~1e-5 of 1).
const SERIES_MAX_TERMS: usize = 2_000_000;

/// Σ_{n≥1} t_n where t_1 = first and t_{n+1} = t_n (a+n)(b+n) / ((c+n)(n+1)) z:
/// the tail of 2F1(a, b; c; z) after its leading 1, scaled so that callers can
/// divide a common factor out of every term analytically. Returns NaN when the
/// series does not settle within [`SERIES_MAX_TERMS`] terms.
pub(crate) fn hypergeometric_tail(a: f64, b: f64, c: f64, z: f64, first: f64) -> f64 {
    let mut term = first;
    let mut sum = first;
    for n in 1..SERIES_MAX_TERMS {
        let k = n as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        // Stop once terms are negligible and shrinking (the ratio tends to z < 1,
        // so a small term that is still growing cannot happen past the peak).
        if term.abs() <= SERIES_TOLERANCE * sum.abs()
            && ((a + k) * (b + k) / ((c + k) * (k + 1.0)) * z).abs() < 1.0
        {
            return sum;
        }
        if !sum.is_finite() {
            return f64::NAN;
        }
    }
    f64::NAN
}

/// The Gauss hypergeometric function 2F1(a, b; c; z) by its power series, for
/// |z| < 1 and c not a non-positive integer.
pub(crate) fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    1.0 + hypergeometric_tail(a, b, c, z, a * b / c * z)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, rel: f64) -> bool {
        (actual - expected).abs() <= rel * expected.abs().max(1e-300)
    }

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        let cases = [
            (1.0, 0.0),
            (2.0, 0.0),
            (5.0, 24f64.ln()),
            (0.5, std::f64::consts::PI.sqrt().ln()),
            (1e-8, 18.42068073818021),
            (171.5, 709.1431630309283),
        ];
        for (x, expected) in cases {
            let got = ln_gamma(x);
            assert!(
                (got - expected).abs() <= 1e-12 * expected.abs().max(1.0),
                "lnΓ({x}) = {got}, want {expected}"
            );
        }
    }

    #[test]
    fn digamma_matches_known_values_and_the_derivative_of_ln_gamma() {
        let euler = 0.5772156649015329;
        let cases = [
            (1.0, -euler),
            (0.5, -euler - 2.0 * 2f64.ln()),
            (2.0, 1.0 - euler),
            (10.0, 2.251752589066721),
            (1e-6, -1_000_000.577_214_02),
            (1e3, 6.907255195648812),
        ];
        for (x, want) in cases {
            assert!(
                close(digamma(x), want, 1e-13),
                "ψ({x}) = {} want {want}",
                digamma(x)
            );
        }
        for x in [0.243, 0.793, 2.4, 7.7, 55.0] {
            let h = 1e-5 * x;
            let numeric = (ln_gamma(x + h) - ln_gamma(x - h)) / (2.0 * h);
            assert!(close(digamma(x), numeric, 1e-7), "x={x}");
        }
    }

    #[test]
    fn log_add_exp_handles_extremes() {
        assert!(close(log_add_exp(0.0, 0.0), 2f64.ln(), 1e-15));
        assert_eq!(log_add_exp(-1e308, 5.0), 5.0);
        assert!(close(
            log_add_exp(1000.0, 1000.0),
            1000.0 + 2f64.ln(),
            1e-15
        ));
        assert!(close(
            log_add_exp(-1000.0, -1001.0),
            -1000.0 + (-1f64).exp().ln_1p(),
            1e-15
        ));
        assert_eq!(
            log_add_exp(f64::NEG_INFINITY, f64::NEG_INFINITY),
            f64::NEG_INFINITY
        );
        assert_eq!(log_add_exp(f64::NEG_INFINITY, 3.0), 3.0);
    }

    #[test]
    fn logistic_is_stable_at_both_ends() {
        assert_eq!(logistic(0.0), 0.5);
        assert!(close(logistic(-800.0), (-800f64).exp(), 1e-12) || logistic(-800.0) == 0.0);
        assert_eq!(logistic(800.0), 1.0);
        assert!(close(logistic(-30.0), 9.357622968839299e-14, 1e-12));
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // 2F1(1,1;2;z) = -ln(1-z)/z
        for z in [0.1f64, 0.5, 0.9, 0.99] {
            assert!(
                close(hyp2f1(1.0, 1.0, 2.0, z), -(1.0 - z).ln() / z, 1e-13),
                "z={z}"
            );
        }
        // 2F1(a,b;b;z) = (1-z)^-a
        assert!(close(hyp2f1(2.5, 3.0, 3.0, 0.7), 0.3f64.powf(-2.5), 1e-13));
        // 2F1(1/2,1/2;3/2;z^2) = asin(z)/z
        let z: f64 = 0.8;
        assert!(close(hyp2f1(0.5, 0.5, 1.5, z * z), z.asin() / z, 1e-13));
        // alternating: 2F1(1,1;2;-z) = ln(1+z)/z
        assert!(close(hyp2f1(1.0, 1.0, 2.0, -0.5), 1.5f64.ln() / 0.5, 1e-14));
    }
}
