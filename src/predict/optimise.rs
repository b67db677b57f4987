//! A Nelder-Mead minimiser with restarts, used to fit both models by maximum
//! likelihood in log-parameter space (so every parameter stays positive).
//!
//! Hand-written rather than a crate: the objective is cheap to call but has no
//! gradient here, the dimension is tiny (3 or 4), and the whole thing is ~100 lines.
//! Uses the dimension-adaptive coefficients of Gao & Han (2012), and restarts from
//! the best point with a fresh simplex until a restart no longer improves the
//! minimum, which guards against the simplex collapsing early.

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
        let (run, used) = simplex_run(&mut eval, &best.0, best.1, step, budget, tol)
            .map_err(|used| OptimiseError::NotConverged { evaluations: evaluations + used })?;
        evaluations += used;
        let improved = best.1 - run.1 > tol.f_abs;
        best = run;
        if !improved {
            break;
        }
    }
    Ok(Minimum { x: best.0, value: best.1, evaluations })
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
    let (reflect, expand, contract, shrink) = (1.0, 1.0 + 2.0 / dim, 0.75 - 1.0 / (2.0 * dim), 1.0 - 1.0 / dim);
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
        if spread <= tol.f_abs && size <= tol.x_abs {
            return Ok((points.swap_remove(0), used));
        }
        if used >= budget {
            return Err(used);
        }
        let centroid: Vec<f64> =
            (0..n).map(|j| points[..n].iter().map(|(p, _)| p[j]).sum::<f64>() / dim).collect();
        let toward = |coef: f64, from: &[f64]| -> Vec<f64> {
            centroid.iter().zip(from).map(|(c, w)| c + coef * (c - w)).collect()
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

    const TIGHT: Tolerance = Tolerance { f_abs: 1e-14, x_abs: 1e-9, max_evaluations: 20_000 };

    fn rosenbrock(x: &[f64]) -> f64 {
        x.windows(2).map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2)).sum()
    }

    #[test]
    fn finds_rosenbrock_minimum_in_2_to_4_dimensions() {
        for start in [vec![-1.2, 1.0], vec![-1.0, 0.5, 2.0], vec![0.0, 0.0, 0.0, 0.0], vec![3.0, -3.0, 3.0, -3.0]] {
            let m = nelder_mead(rosenbrock, &start, 0.5, TIGHT).expect("converges");
            for xi in &m.x {
                assert!((xi - 1.0).abs() < 1e-5, "start {start:?} ended at {:?}", m.x);
            }
            assert!(m.value < 1e-10);
        }
    }

    #[test]
    fn finds_shifted_quadratic_with_unequal_scales() {
        let target = [3.0, -7.0, 0.25];
        let f = |x: &[f64]| (x[0] - 3.0).powi(2) + 1e4 * (x[1] + 7.0).powi(2) + 1e-2 * (x[2] - 0.25).powi(2);
        let m = nelder_mead(f, &[0.0, 0.0, 0.0], 1.0, TIGHT).expect("converges");
        for (got, want) in m.x.iter().zip(target) {
            assert!((got - want).abs() < 1e-5, "{:?}", m.x);
        }
    }

    #[test]
    fn backs_away_from_non_finite_region() {
        // Minimum at x = 1 next to a wall of NaN for x < 0.5.
        let f = |x: &[f64]| if x[0] < 0.5 { f64::NAN } else { (x[0] - 1.0).powi(2) + (x[1] - 2.0).powi(2) };
        let m = nelder_mead(f, &[0.6, 0.0], 1.0, TIGHT).expect("converges");
        assert!((m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 2.0).abs() < 1e-6, "{:?}", m.x);
    }

    #[test]
    fn reports_non_finite_start_and_exhausted_budget() {
        let nan = |_: &[f64]| f64::NAN;
        assert_eq!(nelder_mead(nan, &[1.0], 0.1, TIGHT).unwrap_err(), OptimiseError::NonFiniteStart);
        let tiny = Tolerance { max_evaluations: 20, ..TIGHT };
        let err = nelder_mead(rosenbrock, &[-1.2, 1.0], 0.5, tiny).unwrap_err();
        assert!(matches!(err, OptimiseError::NotConverged { evaluations } if evaluations >= 20));
    }

    #[test]
    fn unbounded_objective_does_not_converge() {
        // Decreases forever along x: the simplex keeps expanding until the budget ends
        // or values overflow to -inf; either way there is no minimum to report as found.
        let f = |x: &[f64]| -x[0];
        let budget = Tolerance { max_evaluations: 2_000, ..TIGHT };
        assert!(nelder_mead(f, &[0.0], 1.0, budget).is_err());
    }
}
