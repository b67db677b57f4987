//! The `[predict]` table of config.toml: time unit, horizon, discounting, churn-risk
//! cut points, refit schedule and fit minimums, with their defaults and a check that
//! names every bad key at once.
//!
//! Kept here so the keys, their defaults and their meaning live next to the code
//! that reads them; config.rs embeds this struct as one table.

use serde::{Deserialize, Serialize};

use super::history::TimeUnit;
use super::model::{ChurnCuts, FittedModel, PredictOptions};
use super::FitOptions;

/// `[predict]` in config.toml. Every key is optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PredictSettings {
    /// Time unit the models are fitted in: "day" or "week" (only alpha's scale
    /// depends on it).
    pub unit: TimeUnit,
    /// Horizon of expected purchases and predicted value, in days.
    pub horizon_days: u32,
    /// Discount rate per 30 days for the predicted value; 0 for none.
    pub monthly_discount_rate: f64,
    /// Churn risk is "high" when p_alive is below this ...
    pub churn_high_below: f64,
    /// ... "medium" below this, "low" otherwise.
    pub churn_medium_below: f64,
    /// Refit when the stored model's as-of day is this many days old (0: every run).
    pub refit_every_days: u32,
    /// A fit needs at least this many members with an order ...
    pub min_members: usize,
    /// ... and this many repeat buyers.
    pub min_repeat_buyers: usize,
}

impl Default for PredictSettings {
    fn default() -> Self {
        let fit = FitOptions::default();
        PredictSettings {
            unit: TimeUnit::Day,
            horizon_days: 90,
            monthly_discount_rate: 0.0,
            churn_high_below: 0.3,
            churn_medium_below: 0.7,
            refit_every_days: 7,
            min_members: fit.min_members,
            min_repeat_buyers: fit.min_repeat_buyers,
        }
    }
}

impl PredictSettings {
    /// Every problem, each naming its key under `predict.`; empty when all is well.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.horizon_days == 0 {
            problems.push("predict.horizon_days must be at least 1".to_string());
        }
        if !(0.0..1.0).contains(&self.monthly_discount_rate) {
            problems.push(format!(
                "predict.monthly_discount_rate must be in [0, 1), got {}",
                self.monthly_discount_rate
            ));
        }
        if let Err(e) = ChurnCuts::new(self.churn_high_below, self.churn_medium_below) {
            problems.push(format!(
                "predict.churn_high_below / predict.churn_medium_below: {e}"
            ));
        }
        if self.min_members < 10 {
            problems.push(format!(
                "predict.min_members must be at least 10, got {}",
                self.min_members
            ));
        }
        if self.min_repeat_buyers < 5 {
            problems.push(format!(
                "predict.min_repeat_buyers must be at least 5, got {}",
                self.min_repeat_buyers
            ));
        }
        problems
    }

    /// The options for [`FittedModel::predict`]; call [`PredictSettings::check`] first
    /// (invalid cut points fall back to the defaults here).
    pub fn predict_options(&self) -> PredictOptions {
        PredictOptions {
            horizon_days: self.horizon_days,
            monthly_discount_rate: self.monthly_discount_rate,
            churn_cuts: ChurnCuts::new(self.churn_high_below, self.churn_medium_below)
                .unwrap_or_default(),
        }
    }

    pub fn fit_options(&self) -> FitOptions {
        FitOptions {
            min_members: self.min_members,
            min_repeat_buyers: self.min_repeat_buyers,
            ..FitOptions::default()
        }
    }

    /// Whether to refit on `today` (days since 1970-01-01) given the stored model:
    /// when there is none, it was fitted in another unit, or it is
    /// `refit_every_days` old.
    pub fn refit_due(&self, stored: Option<&FittedModel>, today: i32) -> bool {
        match stored {
            None => true,
            Some(model) => {
                model.unit != self.unit
                    || i64::from(today) - i64::from(model.as_of_day)
                        >= i64::from(self.refit_every_days)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::{BgNbdFit, BgNbdParams, GammaGammaFit, GammaGammaParams};

    fn parse(toml_text: &str) -> Result<PredictSettings, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_table_gives_defaults_and_keys_parse() {
        assert_eq!(parse(""), Ok(PredictSettings::default()));
        let s = parse(
            "unit = \"week\"\nhorizon_days = 30\nchurn_high_below = 0.2\nrefit_every_days = 1\n",
        )
        .expect("valid table");
        assert_eq!(
            (
                s.unit,
                s.horizon_days,
                s.churn_high_below,
                s.refit_every_days
            ),
            (TimeUnit::Week, 30, 0.2, 1)
        );
        assert!(s.check().is_empty());
        assert_eq!(s.predict_options().horizon_days, 30);
    }

    #[test]
    fn unknown_keys_and_units_are_rejected() {
        assert!(parse("horizon = 30").unwrap_err().contains("horizon"));
        assert!(parse("unit = \"month\"").is_err());
    }

    #[test]
    fn check_names_every_bad_key() {
        let bad = PredictSettings {
            horizon_days: 0,
            monthly_discount_rate: 1.5,
            churn_high_below: 0.8,
            churn_medium_below: 0.5,
            min_members: 1,
            min_repeat_buyers: 0,
            ..PredictSettings::default()
        };
        let problems = bad.check();
        for key in [
            "horizon_days",
            "monthly_discount_rate",
            "churn_high_below",
            "min_members",
            "min_repeat_buyers",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains(&format!("predict.{key}"))),
                "{key}: {problems:?}"
            );
        }
        assert_eq!(problems.len(), 5);
    }

    #[test]
    fn refit_schedule() {
        let s = PredictSettings {
            refit_every_days: 7,
            ..PredictSettings::default()
        };
        let model = FittedModel {
            as_of_day: 100,
            unit: TimeUnit::Day,
            purchases: BgNbdFit {
                params: BgNbdParams {
                    r: 1.0,
                    alpha: 1.0,
                    a: 1.0,
                    b: 1.0,
                },
                log_likelihood: 0.0,
                members: 0,
                repeat_buyers: 0,
                evaluations: 0,
            },
            spend: GammaGammaFit {
                params: GammaGammaParams {
                    p: 1.0,
                    q: 2.0,
                    v: 1.0,
                },
                log_likelihood: 0.0,
                repeat_buyers: 0,
                evaluations: 0,
            },
        };
        assert!(s.refit_due(None, 100));
        assert!(!s.refit_due(Some(&model), 106));
        assert!(s.refit_due(Some(&model), 107));
        let weekly = PredictSettings {
            unit: TimeUnit::Week,
            ..s
        };
        assert!(
            weekly.refit_due(Some(&model), 101),
            "a model in another unit is refitted"
        );
    }
}
