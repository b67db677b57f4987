//! Predicted member value: the probability that a member is still "alive", the
//! purchases to expect, the spend per purchase and the value over a horizon, from
//! the BG/NBD and Gamma-Gamma models fitted by maximum likelihood on the shop's own
//! purchase history.
//!
//! Architecture invariant: pure computation on plain data. No I/O, no store, no
//! clock: callers pass each member's order days and the as-of day, and keep the
//! serde-serialisable [`FittedModel`] wherever they like.
//!
//! Flow: [`PurchaseHistory::from_order_days`] per member -> [`fit`] ->
//! [`FittedModel::predict`] / [`FittedModel::predict_all`] per member, and
//! [`FittedModel::holdout_check`] (with [`calibration_and_holdout`]) to compare
//! expected with actual purchases after the fit date. [`PredictSettings`] is the
//! `[predict]` table of config.toml and decides when a stored model is due for a refit.

mod bgnbd;
mod gamma_gamma;
mod history;
mod model;
mod optimise;
mod settings;
mod special;

pub use bgnbd::{BgNbdFit, BgNbdParams};
pub use gamma_gamma::{GammaGammaFit, GammaGammaParams};
pub use history::{
    calibration_and_holdout, purchases_between, DaySpend, PurchaseHistory, TimeUnit,
    UnknownTimeUnit,
};
pub use model::{
    fit, ChurnCuts, ChurnRisk, FittedModel, FrequencyRow, HoldoutCheck, MemberPrediction,
    PredictOptions,
};
pub use settings::PredictSettings;

use rayon::prelude::*;

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictError {
    #[error("too few members to fit: {members}, need at least {minimum}")]
    TooFewMembers { members: usize, minimum: usize },
    #[error("too few repeat buyers to fit: {repeat_buyers}, need at least {minimum}")]
    TooFewRepeatBuyers {
        repeat_buyers: usize,
        minimum: usize,
    },
    #[error("{model} fit did not converge within {evaluations} likelihood evaluations")]
    NotConverged {
        model: &'static str,
        evaluations: usize,
    },
    #[error("the data cannot support a {model} fit: {reason}")]
    Unidentified { model: &'static str, reason: String },
    #[error("member {index}: {reason}")]
    InvalidHistory { index: usize, reason: &'static str },
}

/// Limits and tolerances of a fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitOptions {
    /// Fewer members than this is an error.
    pub min_members: usize,
    /// Fewer repeat buyers (x > 0; for Gamma-Gamma also spend > 0) is an error.
    pub min_repeat_buyers: usize,
    /// Converged when the gradient of the mean log-likelihood per member with respect
    /// to the log-parameters is at most this times max(1, |mean log-likelihood|) in
    /// every component (BFGS), or when the simplex's values differ by at most a
    /// hundredth of it (the Nelder-Mead fallback).
    pub tolerance: f64,
    /// Give up after this many likelihood evaluations per model.
    pub max_evaluations: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            min_members: 100,
            min_repeat_buyers: 20,
            tolerance: 1e-8,
            max_evaluations: 20_000,
        }
    }
}

/// Σ f(range) over 0..n cut into fixed chunks, the chunks on rayon and their sums
/// added in order, so the total does not depend on thread scheduling.
pub(crate) fn chunked_sum<const K: usize>(
    n: usize,
    f: impl Fn(std::ops::Range<usize>) -> [f64; K] + Sync,
) -> [f64; K] {
    const CHUNK: usize = 1 << 15;
    if n <= CHUNK {
        return f(0..n);
    }
    let sums: Vec<[f64; K]> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| f(c * CHUNK..((c + 1) * CHUNK).min(n)))
        .collect();
    sums.iter().fold([0.0; K], |mut total, part| {
        total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
        total
    })
}
