//! The fitted pair of models as one stored value, and what it says per member:
//! P(alive), expected purchases and spend over a horizon, predicted value, a
//! churn-risk tier; plus the holdout check of a fit.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::bgnbd::{self, BgNbdFit};
use super::gamma_gamma::{self, GammaGammaFit};
use super::history::{PurchaseHistory, TimeUnit};
use super::{FitOptions, PredictError};

/// Both fitted models, with the as-of day and unit of the histories they were fitted on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FittedModel {
    /// The fit's as-of day (calibration end), days since 1970-01-01, UTC.
    pub as_of_day: i32,
    pub unit: TimeUnit,
    pub purchases: BgNbdFit,
    pub spend: GammaGammaFit,
}

/// Fits BG/NBD on all `histories` and Gamma-Gamma on their repeat buyers.
/// `histories` must all be built as of `as_of_day` in `unit`.
pub fn fit(
    histories: &[PurchaseHistory],
    as_of_day: i32,
    unit: TimeUnit,
    options: &FitOptions,
) -> Result<FittedModel, PredictError> {
    for (index, h) in histories.iter().enumerate() {
        if let Some(reason) = invalid(h) {
            return Err(PredictError::InvalidHistory { index, reason });
        }
    }
    let purchases = bgnbd::fit(histories, options)?;
    let spend = gamma_gamma::fit(histories, options)?;
    Ok(FittedModel {
        as_of_day,
        unit,
        purchases,
        spend,
    })
}

fn invalid(h: &PurchaseHistory) -> Option<&'static str> {
    let finite = [h.frequency, h.recency, h.age, h.mean_repeat_value]
        .iter()
        .all(|v| v.is_finite());
    if !finite {
        Some("non-finite value")
    } else if h.frequency < 0.0 || h.frequency.fract() != 0.0 || h.frequency > f64::from(u32::MAX) {
        Some("frequency is not a whole number of repeat purchases")
    } else if h.recency < 0.0 || h.recency > h.age {
        Some("recency must lie between 0 and age")
    } else if h.frequency == 0.0 && h.recency != 0.0 {
        Some("recency must be 0 without repeat purchases")
    } else if h.mean_repeat_value < 0.0 {
        Some("negative mean repeat value")
    } else {
        None
    }
}

/// Churn risk from P(alive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChurnRisk {
    Low,
    Medium,
    High,
}

impl ChurnRisk {
    pub const ALL: [ChurnRisk; 3] = [ChurnRisk::Low, ChurnRisk::Medium, ChurnRisk::High];
    pub fn as_str(self) -> &'static str {
        match self {
            ChurnRisk::Low => "low",
            ChurnRisk::Medium => "medium",
            ChurnRisk::High => "high",
        }
    }
}

/// Cut points on P(alive): `high` below `high_below`, `medium` below `medium_below`,
/// `low` otherwise. Built only through [`ChurnCuts::new`], which checks the order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChurnCuts {
    high_below: f64,
    medium_below: f64,
}

impl ChurnCuts {
    /// Requires 0 <= high_below <= medium_below <= 1.
    pub fn new(high_below: f64, medium_below: f64) -> Result<ChurnCuts, String> {
        if (0.0..=1.0).contains(&high_below) && (high_below..=1.0).contains(&medium_below) {
            Ok(ChurnCuts {
                high_below,
                medium_below,
            })
        } else {
            Err(format!(
                "churn-risk cut points must satisfy 0 <= high_below <= medium_below <= 1, got {high_below} and {medium_below}"
            ))
        }
    }

    pub fn tier(&self, p_alive: f64) -> ChurnRisk {
        if p_alive < self.high_below {
            ChurnRisk::High
        } else if p_alive < self.medium_below {
            ChurnRisk::Medium
        } else {
            ChurnRisk::Low
        }
    }
}

impl Default for ChurnCuts {
    fn default() -> Self {
        ChurnCuts {
            high_below: 0.3,
            medium_below: 0.7,
        }
    }
}

/// What to predict over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PredictOptions {
    /// Horizon for expected purchases and predicted value, in days.
    pub horizon_days: u32,
    /// Discount rate per 30 days for the predicted value (lifetimes'
    /// `customer_lifetime_value` convention: purchases expected in each 30-day step are
    /// discounted by (1 + rate)^(step end / 30 days)). 0 means undiscounted.
    pub monthly_discount_rate: f64,
    pub churn_cuts: ChurnCuts,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions {
            horizon_days: 90,
            monthly_discount_rate: 0.0,
            churn_cuts: ChurnCuts::default(),
        }
    }
}

/// The models' view of one member.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberPrediction {
    pub p_alive: f64,
    /// Expected purchases (distinct purchase days) within the horizon.
    pub expected_purchases: f64,
    /// Expected spend per purchase, in cents.
    pub expected_spend_cents: i64,
    /// Expected purchases x expected spend over the horizon, discounted if asked, in cents.
    pub predicted_value_cents: i64,
    pub churn_risk: ChurnRisk,
}

impl FittedModel {
    /// Predicts for one member whose history is built in this model's unit, as of
    /// the day the prediction is for (which may be later than the fit's as-of day).
    pub fn predict(&self, h: &PurchaseHistory, options: &PredictOptions) -> MemberPrediction {
        let bg = &self.purchases.params;
        let unit_days = self.unit.days();
        let horizon = f64::from(options.horizon_days) / unit_days;
        let p_alive = bg.p_alive(h);
        let expected_purchases = bg.expected_purchases(h, horizon);
        let spend = self.spend.params.expected_spend(h);
        let value = if options.monthly_discount_rate == 0.0 {
            expected_purchases * spend
        } else {
            let mut value = 0.0;
            let (mut before, mut day) = (0.0, 0u32);
            while day < options.horizon_days {
                day = (day + 30).min(options.horizon_days);
                let upto = bg.expected_purchases(h, f64::from(day) / unit_days);
                value += (upto - before) * spend
                    / (1.0 + options.monthly_discount_rate).powf(f64::from(day) / 30.0);
                before = upto;
            }
            value
        };
        MemberPrediction {
            p_alive,
            expected_purchases,
            expected_spend_cents: to_cents(spend),
            predicted_value_cents: to_cents(value),
            churn_risk: options.churn_cuts.tier(p_alive),
        }
    }

    /// [`FittedModel::predict`] for many members, in parallel, in input order.
    pub fn predict_all(
        &self,
        histories: &[PurchaseHistory],
        options: &PredictOptions,
    ) -> Vec<MemberPrediction> {
        histories
            .par_iter()
            .with_min_len(4096)
            .map(|h| self.predict(h, options))
            .collect()
    }

    /// Compares expected with actual repeat purchases in the `holdout_days` after the
    /// fit's as-of day. `members` pairs each member's calibration history (as of the
    /// fit's as-of day, members first seen later left out) with their distinct
    /// purchase days in the holdout (see [`super::purchases_between`]).
    pub fn holdout_check(
        &self,
        members: &[(PurchaseHistory, u32)],
        holdout_days: u32,
    ) -> HoldoutCheck {
        let t = f64::from(holdout_days) / self.unit.days();
        let expected: Vec<f64> = members
            .par_iter()
            .with_min_len(4096)
            .map(|(h, _)| self.purchases.params.expected_purchases(h, t))
            .collect();
        let mut rows: Vec<FrequencyRow> = (0..=FREQUENCY_ROWS_TOP)
            .map(|frequency| FrequencyRow {
                frequency,
                members: 0,
                mean_expected: 0.0,
                mean_actual: 0.0,
            })
            .collect();
        for ((h, actual), e) in members.iter().zip(&expected) {
            let row = &mut rows[(h.frequency as usize).min(FREQUENCY_ROWS_TOP as usize)];
            row.members += 1;
            row.mean_expected += e;
            row.mean_actual += f64::from(*actual);
        }
        for row in &mut rows {
            if row.members > 0 {
                row.mean_expected /= row.members as f64;
                row.mean_actual /= row.members as f64;
            }
        }
        HoldoutCheck {
            holdout_days,
            members: members.len(),
            expected_total: expected.iter().sum(),
            actual_total: members.iter().map(|(_, a)| u64::from(*a)).sum(),
            by_frequency: rows,
        }
    }
}

/// The last [`FrequencyRow`] gathers all members with at least this many repeat purchases.
const FREQUENCY_ROWS_TOP: u32 = 7;

/// Expected against actual repeat purchases after the fit date.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HoldoutCheck {
    pub holdout_days: u32,
    pub members: usize,
    pub expected_total: f64,
    pub actual_total: u64,
    /// By calibration-period repeat purchases 0, 1, ..., 7 (the last row is 7 or more),
    /// as in Figure 4 of the BG/NBD paper.
    pub by_frequency: Vec<FrequencyRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrequencyRow {
    pub frequency: u32,
    pub members: usize,
    pub mean_expected: f64,
    pub mean_actual: f64,
}

/// Currency units to cents, half away from zero; saturates on overflow.
fn to_cents(units: f64) -> i64 {
    (units * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::{BgNbdParams, GammaGammaParams};

    fn model() -> FittedModel {
        FittedModel {
            as_of_day: 10134,
            unit: TimeUnit::Week,
            purchases: BgNbdFit {
                params: BgNbdParams {
                    r: 0.243,
                    alpha: 4.414,
                    a: 0.793,
                    b: 2.426,
                },
                log_likelihood: -9582.4,
                members: 2357,
                repeat_buyers: 1054,
                evaluations: 1,
            },
            spend: GammaGammaFit {
                params: GammaGammaParams {
                    p: 6.25,
                    q: 3.74,
                    v: 15.44,
                },
                log_likelihood: -4000.0,
                repeat_buyers: 946,
                evaluations: 1,
            },
        }
    }

    #[test]
    fn churn_tiers_follow_cut_points() {
        let cuts = ChurnCuts::new(0.2, 0.6).expect("valid cuts");
        let cases = [
            (0.0, ChurnRisk::High),
            (0.19, ChurnRisk::High),
            (0.2, ChurnRisk::Medium),
            (0.59, ChurnRisk::Medium),
            (0.6, ChurnRisk::Low),
            (1.0, ChurnRisk::Low),
        ];
        for (p, tier) in cases {
            assert_eq!(cuts.tier(p), tier, "p_alive {p}");
        }
        assert!(ChurnCuts::new(0.7, 0.3).is_err());
        assert!(ChurnCuts::new(-0.1, 0.3).is_err());
        assert!(ChurnCuts::new(0.3, 1.5).is_err());
    }

    #[test]
    fn value_is_purchases_times_spend_and_discounting_lowers_it() {
        let m = model();
        let h = PurchaseHistory {
            frequency: 2.0,
            recency: 30.43,
            age: 38.86,
            mean_repeat_value: 22.35,
        };
        let plain = m.predict(&h, &PredictOptions::default());
        let spend = m.spend.params.expected_spend(&h);
        assert_eq!(
            plain.predicted_value_cents,
            to_cents(plain.expected_purchases * spend)
        );
        assert_eq!(plain.expected_spend_cents, to_cents(spend));
        let discounted = m.predict(
            &h,
            &PredictOptions {
                monthly_discount_rate: 0.01,
                ..PredictOptions::default()
            },
        );
        assert!(discounted.predicted_value_cents < plain.predicted_value_cents);
        // 90 days is three 30-day steps discounted by at most 1.01^3
        assert!(
            discounted.predicted_value_cents as f64
                > plain.predicted_value_cents as f64 / 1.01f64.powi(3) - 1.0
        );
        assert_eq!(plain.expected_purchases, discounted.expected_purchases);
    }

    #[test]
    fn fitted_model_round_trips_through_json() {
        let m = model();
        let json = serde_json::to_string(&m).expect("serialises");
        assert!(json.contains("\"unit\":\"week\""), "{json}");
        let back: FittedModel = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, m);
    }

    #[test]
    fn rejects_invalid_histories_with_their_index() {
        let good = PurchaseHistory {
            frequency: 1.0,
            recency: 1.0,
            age: 2.0,
            mean_repeat_value: 1.0,
        };
        let bad = [
            PurchaseHistory {
                frequency: 1.5,
                ..good
            },
            PurchaseHistory {
                recency: 3.0,
                ..good
            },
            PurchaseHistory {
                frequency: 0.0,
                ..good
            },
            PurchaseHistory {
                age: f64::NAN,
                ..good
            },
            PurchaseHistory {
                mean_repeat_value: -1.0,
                ..good
            },
        ];
        for b in bad {
            let mut all = vec![good; 300];
            all[17] = b;
            match fit(&all, 0, TimeUnit::Day, &FitOptions::default()) {
                Err(PredictError::InvalidHistory { index: 17, .. }) => {}
                other => panic!("{b:?}: {other:?}"),
            }
        }
    }

    /// Deterministic members: x = i mod 5 repeat purchases, spread recency and age,
    /// mean spend from `spend(i)`.
    fn members(n: usize, spend: impl Fn(usize) -> f64) -> Vec<PurchaseHistory> {
        (0..n)
            .map(|i| {
                let x = (i % 5) as f64;
                let age = 10.0 + (i % 37) as f64;
                let recency = if x > 0.0 {
                    age * ((i % 11) as f64 + 1.0) / 12.0
                } else {
                    0.0
                };
                PurchaseHistory {
                    frequency: x,
                    recency,
                    age,
                    mean_repeat_value: if x > 0.0 { spend(i) } else { 0.0 },
                }
            })
            .collect()
    }

    #[test]
    fn fit_errors_say_why_the_data_cannot_support_a_fit() {
        let options = FitOptions::default();
        let ordinary = |i: usize| 10.0 + (i % 13) as f64;
        assert!(fit(&members(1000, ordinary), 0, TimeUnit::Day, &options).is_ok());
        let err = |h: &[PurchaseHistory], o: &FitOptions| {
            fit(h, 0, TimeUnit::Day, o).expect_err("must not fit")
        };
        assert_eq!(
            err(&members(50, ordinary), &options),
            PredictError::TooFewMembers {
                members: 50,
                minimum: 100
            }
        );
        let mut few_repeaters = members(1000, ordinary);
        few_repeaters.iter_mut().skip(10).for_each(|h| {
            *h = PurchaseHistory {
                frequency: 0.0,
                recency: 0.0,
                ..*h
            }
        });
        assert!(matches!(
            err(&few_repeaters, &options),
            PredictError::TooFewRepeatBuyers { minimum: 20, .. }
        ));
        let all_repeat: Vec<PurchaseHistory> = members(1000, ordinary)
            .into_iter()
            .filter(|h| h.frequency > 0.0)
            .collect();
        assert!(matches!(
            err(&all_repeat, &options),
            PredictError::Unidentified {
                model: "BG/NBD",
                ..
            }
        ));
        let starved = FitOptions {
            max_evaluations: 5,
            ..options
        };
        assert!(matches!(
            err(&members(1000, ordinary), &starved),
            PredictError::NotConverged {
                evaluations: 5..,
                ..
            }
        ));
        // Spend spread over twelve orders of magnitude: no finite mean spend.
        let wild = |i: usize| 10f64.powf((i * 7919 % 1000) as f64 / 1000.0 * 12.0 - 4.0);
        assert!(matches!(
            err(&members(1000, wild), &options),
            PredictError::Unidentified {
                model: "Gamma-Gamma",
                ..
            }
        ));
    }

    #[test]
    fn holdout_check_groups_by_frequency() {
        let m = model();
        let h = |x: f64| PurchaseHistory {
            frequency: x,
            recency: if x > 0.0 { 10.0 } else { 0.0 },
            age: 30.0,
            mean_repeat_value: 0.0,
        };
        let members = vec![
            (h(0.0), 0),
            (h(0.0), 2),
            (h(1.0), 1),
            (h(9.0), 4),
            (h(12.0), 6),
        ];
        let check = m.holdout_check(&members, 39 * 7);
        assert_eq!(check.members, 5);
        assert_eq!(check.actual_total, 13);
        assert_eq!(check.by_frequency.len(), 8);
        assert_eq!(
            (
                check.by_frequency[0].members,
                check.by_frequency[0].mean_actual
            ),
            (2, 1.0)
        );
        assert_eq!(
            (
                check.by_frequency[7].members,
                check.by_frequency[7].mean_actual
            ),
            (2, 5.0)
        );
        let expected: f64 = members
            .iter()
            .map(|(h, _)| m.purchases.params.expected_purchases(h, 39.0))
            .sum();
        assert!((check.expected_total - expected).abs() < 1e-9);
    }
}
