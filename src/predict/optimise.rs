//! Minimisers used to fit both models by maximum likelihood in log-parameter space
//! (so every parameter stays positive): BFGS with a backtracking line search for the
//! fast path (both models have analytic gradients), and a Nelder-Mead with restarts
//! as the derivative-free fallback when BFGS fails.
//!
//! Hand-written rather than a crate: the dimension is tiny (3 or 4), each needs
//! ~100 lines, and the fits need exact control of tolerances and of non-finite
//! values. Nelder-Mead uses the dimension-adaptive coefficients of Gao & Han
//! (2012), and restarts from the best point with a fresh simplex until a restart no
//! longer improves the minimum, which guards against the simplex collapsing early.

/// When to stop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tolerance {
    /// Converged when the simplex's values differ by at most this much (absolute).
    pub f_abs: f64,
    /// ... and its vertices are within this distance of the best one, per coordinate.
    pub x_abs: f64,
    /// Give up after this many objective evaluations in total.
    pub max_evaluations: usize,
}

/// The minimum found.
#[derive(Clone, Debug)]
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub evaluations: usize,
}

/// Why no minimum was found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum OptimiseError {
    /// The evaluation budget ran out before the simplex converged.
    NotConverged { evaluations: usize },
    /// The objective is not finite even at the starting point.
    NonFiniteStart,
}

/// Minimises `f` by BFGS from `start`. `f(x, grad)` returns the value and writes
/// the gradient. Converged when every gradient component is at most
/// `gradient_tol · max(1, |f|)`, or, once `f` stops decreasing measurably (the line
/// search works on values, which round at ~1e-16 · |f|), when it is at most
/// [`FLOOR_GRADIENT`] · max(1, |f|). `max_evaluations` bounds the calls of `f`.
pub(crate) fn bfgs(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    start: &[f64],
    gradient_tol: f64,
    max_evaluations: usize,
) -> Result<Minimum, OptimiseError> {
    let n = start.len();
    let small =
        |g: &[f64], tol: f64, value: f64| g.iter().all(|v| v.abs() <= tol * value.abs().max(1.0));
    let mut x = start.to_vec();
    let mut g = vec![0.0; n];
    let mut value = f(&x, &mut g);
    let mut evaluations = 1;
    if !value.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Err(OptimiseError::NonFiniteStart);
    }
    // Inverse Hessian estimate, row-major; starts as the identity, rescaled after
    // the first step (Nocedal & Wright, eq. 6.20).
    let mut h: Vec<f64> = (0..n * n)
        .map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let mut first_step = true;
    let mut stalled = 0;
    let (mut x_new, mut g_new) = (vec![0.0; n], vec![0.0; n]);
    loop {
        if small(&g, gradient_tol, value) {
            return Ok(Minimum {
                x,
                value,
                evaluations,
            });
        }
        if evaluations >= max_evaluations {
            return Err(OptimiseError::NotConverged { evaluations });
        }
        let mut direction: Vec<f64> = (0..n)
            .map(|i| -(0..n).map(|j| h[i * n + j] * g[j]).sum::<f64>())
            .collect();
        let mut slope: f64 = direction.iter().zip(&g).map(|(d, gi)| d * gi).sum();
        if slope >= 0.0 {
            // Not a descent direction (lost curvature): restart from steepest descent.
            h.iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v = if k % (n + 1) == 0 { 1.0 } else { 0.0 });
            direction = g.iter().map(|v| -v).collect();
            slope = -g.iter().map(|v| v * v).sum::<f64>();
        }
        // The first step moves at most 1 in log-parameter space.
        let norm = direction.iter().map(|d| d * d).sum::<f64>().sqrt();
        let mut step = if first_step {
            (1.0 / norm).min(1.0)
        } else {
            1.0
        };
        // Backtracking line search with the Armijo condition.
        let new_value = loop {
            for i in 0..n {
                x_new[i] = x[i] + step * direction[i];
            }
            let v = f(&x_new, &mut g_new);
            evaluations += 1;
            if v.is_finite()
                && g_new.iter().all(|d| d.is_finite())
                && v <= value + 1e-4 * step * slope
            {
                break Some(v);
            }
            if evaluations >= max_evaluations || step < 1e-12 {
                break None;
            }
            step *= 0.5;
        };
        let floor = || {
            if small(&g, FLOOR_GRADIENT, value) {
                Ok(Minimum {
                    x: x.clone(),
                    value,
                    evaluations,
                })
            } else {
                Err(OptimiseError::NotConverged { evaluations })
            }
        };
        // No decrease along a descent direction, or only by rounding noise three
        // times in a row: the floating-point floor of the objective.
        let Some(new_value) = new_value else {
            return floor();
        };
        stalled = if value - new_value <= 1e-13 * value.abs().max(1.0) {
            stalled + 1
        } else {
            0
        };
        if stalled >= 3 {
            return floor();
        }
        let s: Vec<f64> = (0..n).map(|i| x_new[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| g_new[i] - g[i]).collect();
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        if sy
            > 1e-12
                * s.iter().map(|v| v * v).sum::<f64>().sqrt()
                * y.iter().map(|v| v * v).sum::<f64>().sqrt()
        {
            if first_step {
                let scale = sy / y.iter().map(|v| v * v).sum::<f64>();
                h.iter_mut().for_each(|v| *v *= scale);
            }
            // H <- (I - ρ s yᵀ) H (I - ρ y sᵀ) + ρ s sᵀ
            let rho = 1.0 / sy;
            let hy: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|j| h[i * n + j] * y[j]).sum())
                .collect();
            let yhy: f64 = y.iter().zip(&hy).map(|(a, b)| a * b).sum();
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] +=
                        (1.0 + rho * yhy) * rho * s[i] * s[j] - rho * (hy[i] * s[j] + s[i] * hy[j]);
                }
            }
        }
        first_step = false;
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        value = new_value;
    }
}

/// The gradient (relative to max(1, |f|)) accepted at the floating-point floor of
/// the objective. With curvature h a gradient g changes f by ~g²/h, so below about
/// 1e-7 a line search on values can no longer see progress.
const FLOOR_GRADIENT: f64 = 1e-6;

/// Restarts after the first convergence, at most.
const MAX_RESTARTS: usize = 8;

/// Minimises `f` from `start`, with an initial simplex of side `step` along each axis.
/// Non-finite values of `f` are treated as +∞ (a wall the simplex backs away from).
pub(crate) fn nelder_mead(
    mut f: impl FnMut(&[f64]) -> f64,
    start: &[f64],
    step: f64,
    tol: Tolerance,
) -> Result<Minimum, OptimiseError> {
    let mut eval = |x: &[f64]| {
        let v = f(x);
        if v.is_nan() {
            f64::INFINITY
        } else {
            v
        }
    };
    let start_value = eval(start);
    if !start_value.is_finite() {
        return Err(OptimiseError::NonFiniteStart);
    }
    let mut evaluations = 1;
    let mut best = (start.to_vec(), start_value);
    for _ in 0..=MAX_RESTARTS {
        let budget = tol.max_evaluations.saturating_sub(evaluations);
        let (run, used) =
            simplex_run(&mut eval, &best.0, best.1, step, budget, tol).map_err(|used| {
                OptimiseError::NotConverged {
                    evaluations: evaluations + used,
                }
            })?;
        evaluations += used;
        if !run.1.is_finite() || run.0.iter().any(|v| !v.is_finite()) {
            // Ran off to infinity: there is no minimum.
            return Err(OptimiseError::NotConverged { evaluations });
        }
        let improved = best.1 - run.1 > tol.f_abs;
        best = run;
        if !improved {
            break;
        }
    }
    Ok(Minimum {
        x: best.0,
        value: best.1,
        evaluations,
    })
}

/// One Nelder-Mead run from `start` (whose value is known) until convergence:
/// the best vertex and the evaluations used, or the evaluations used when `budget`
/// ran out first.
fn simplex_run(
    eval: &mut impl FnMut(&[f64]) -> f64,
    start: &[f64],
    start_value: f64,
    step: f64,
    budget: usize,
    tol: Tolerance,
) -> Result<((Vec<f64>, f64), usize), usize> {
    let n = start.len();
    let dim = n as f64;
    let (reflect, expand, contract, shrink) = (
        1.0,
        1.0 + 2.0 / dim,
        0.75 - 1.0 / (2.0 * dim),
        1.0 - 1.0 / dim,
    );
    let mut points: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    points.push((start.to_vec(), start_value));
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += step;
        let v = eval(&p);
        points.push((p, v));
    }
    let mut used = n;
    loop {
        points.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (&points[0], &points[n]);
        let spread = worst.1 - best.1;
        let size = points[1..]
            .iter()
            .flat_map(|(p, _)| p.iter().zip(&best.0).map(|(a, b)| (a - b).abs()))
            .fold(0.0, f64::max);
        // Also stop when the simplex has collapsed below rounding while its values
        // still differ by noise; the restart that follows checks it is a minimum.
        if (spread <= tol.f_abs && size <= tol.x_abs) || size <= 1e-12 {
            return Ok((points.swap_remove(0), used));
        }
        if used >= budget {
            return Err(used);
        }
        let centroid: Vec<f64> = (0..n)
            .map(|j| points[..n].iter().map(|(p, _)| p[j]).sum::<f64>() / dim)
            .collect();
        let toward = |coef: f64, from: &[f64]| -> Vec<f64> {
            centroid
                .iter()
                .zip(from)
                .map(|(c, w)| c + coef * (c - w))
                .collect()
        };
        let worst_point = points[n].0.clone();
        let xr = toward(reflect, &worst_point);
        let fr = eval(&xr);
        used += 1;
        if fr < points[0].1 {
            let xe = toward(reflect * expand, &worst_point);
            let fe = eval(&xe);
            used += 1;
            points[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
            continue;
        }
        if fr < points[n - 1].1 {
            points[n] = (xr, fr);
            continue;
        }
        // Contract: outside if the reflection beat the worst, inside otherwise.
        let (xc, fc) = if fr < points[n].1 {
            let xc = toward(reflect * contract, &worst_point);
            let fc = eval(&xc);
            (xc, fc)
        } else {
            let xc = toward(-contract, &worst_point);
            let fc = eval(&xc);
            (xc, fc)
        };
        used += 1;
        if fc < points[n].1.min(fr) {
            points[n] = (xc, fc);
            continue;
        }
        let best_point = points[0].0.clone();
        for (p, v) in points.iter_mut().skip(1) {
            for (pj, bj) in p.iter_mut().zip(&best_point) {
                *pj = bj + shrink * (*pj - bj);
            }
            *v = eval(p);
            used += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIGHT: Tolerance = Tolerance {
        f_abs: 1e-14,
        x_abs: 1e-9,
        max_evaluations: 20_000,
    };

    fn rosenbrock(x: &[f64]) -> f64 {
        x.windows(2)
            .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
            .sum()
    }

    #[test]
    fn finds_rosenbrock_minimum_in_2_to_4_dimensions() {
        for start in [
            vec![-1.2, 1.0],
            vec![-1.0, 0.5, 2.0],
            vec![0.0, 0.0, 0.0, 0.0],
            vec![3.0, -3.0, 3.0, -3.0],
        ] {
            let m = nelder_mead(rosenbrock, &start, 0.5, TIGHT).expect("converges");
            for xi in &m.x {
                assert!(
                    (xi - 1.0).abs() < 1e-5,
                    "start {start:?} ended at {:?}",
                    m.x
                );
            }
            assert!(m.value < 1e-10);
        }
    }

    fn rosenbrock_with_gradient(x: &[f64], g: &mut [f64]) -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..x.len() - 1 {
            let (a, b) = (x[i], x[i + 1]);
            g[i] += -400.0 * a * (b - a * a) - 2.0 * (1.0 - a);
            g[i + 1] += 200.0 * (b - a * a);
        }
        rosenbrock(x)
    }

    #[test]
    fn bfgs_finds_rosenbrock_minimum() {
        for start in [
            vec![-1.2, 1.0],
            vec![-1.0, 0.5, 2.0],
            vec![0.0, 0.0, 0.0, 0.0],
            vec![3.0, -3.0, 3.0, -3.0],
        ] {
            let m = bfgs(rosenbrock_with_gradient, &start, 1e-10, 10_000).expect("converges");
            for xi in &m.x {
                assert!(
                    (xi - 1.0).abs() < 1e-7,
                    "start {start:?} ended at {:?}",
                    m.x
                );
            }
            assert!(m.evaluations < 500, "{} evaluations", m.evaluations);
        }
    }

    #[test]
    fn bfgs_backs_away_from_non_finite_region_and_reports_failures() {
        // Minimum at (1, 2) with a NaN wall for x < 0.5 that a full first step crosses.
        let f = |x: &[f64], g: &mut [f64]| {
            if x[0] < 0.5 {
                return f64::NAN;
            }
            g[0] = 2.0 * (x[0] - 1.0);
            g[1] = 20.0 * (x[1] - 2.0);
            (x[0] - 1.0).powi(2) + 10.0 * (x[1] - 2.0).powi(2)
        };
        let m = bfgs(f, &[0.6, -5.0], 1e-12, 1000).expect("converges");
        assert!(
            (m.x[0] - 1.0).abs() < 1e-9 && (m.x[1] - 2.0).abs() < 1e-9,
            "{:?}",
            m.x
        );
        let nan = |_: &[f64], _: &mut [f64]| f64::NAN;
        assert_eq!(
            bfgs(nan, &[1.0], 1e-9, 100).unwrap_err(),
            OptimiseError::NonFiniteStart
        );
        let err = bfgs(rosenbrock_with_gradient, &[-1.2, 1.0], 1e-12, 10).unwrap_err();
        assert!(matches!(err, OptimiseError::NotConverged { .. }), "{err:?}");
        // Unbounded below: never converges.
        let down = |x: &[f64], g: &mut [f64]| {
            g[0] = -1.0;
            -x[0]
        };
        assert!(bfgs(down, &[0.0], 1e-9, 500).is_err());
    }

    #[test]
    fn finds_shifted_quadratic_with_unequal_scales() {
        let target = [3.0, -7.0, 0.25];
        let f = |x: &[f64]| {
            (x[0] - 3.0).powi(2) + 1e4 * (x[1] + 7.0).powi(2) + 1e-2 * (x[2] - 0.25).powi(2)
        };
        let m = nelder_mead(f, &[0.0, 0.0, 0.0], 1.0, TIGHT).expect("converges");
        for (got, want) in m.x.iter().zip(target) {
            assert!((got - want).abs() < 1e-5, "{:?}", m.x);
        }
    }

    #[test]
    fn backs_away_from_non_finite_region() {
        // Minimum at x = 1 next to a wall of NaN for x < 0.5.
        let f = |x: &[f64]| {
            if x[0] < 0.5 {
                f64::NAN
            } else {
                (x[0] - 1.0).powi(2) + (x[1] - 2.0).powi(2)
            }
        };
        let m = nelder_mead(f, &[0.6, 0.0], 1.0, TIGHT).expect("converges");
        assert!(
            (m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 2.0).abs() < 1e-6,
            "{:?}",
            m.x
        );
    }

    #[test]
    fn reports_non_finite_start_and_exhausted_budget() {
        let nan = |_: &[f64]| f64::NAN;
        assert_eq!(
            nelder_mead(nan, &[1.0], 0.1, TIGHT).unwrap_err(),
            OptimiseError::NonFiniteStart
        );
        let tiny = Tolerance {
            max_evaluations: 20,
            ..TIGHT
        };
        let err = nelder_mead(rosenbrock, &[-1.2, 1.0], 0.5, tiny).unwrap_err();
        assert!(matches!(err, OptimiseError::NotConverged { evaluations } if evaluations >= 20));
    }

    #[test]
    fn unbounded_objective_does_not_converge() {
        // Decreases forever along x: the simplex keeps expanding until the budget ends
        // or values overflow to -inf; either way there is no minimum to report as found.
        let f = |x: &[f64]| -x[0];
        let budget = Tolerance {
            max_evaluations: 2_000,
            ..TIGHT
        };
        assert!(nelder_mead(f, &[0.0], 1.0, budget).is_err());
    }
}
