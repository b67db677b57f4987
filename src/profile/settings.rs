//! The `[profile]` table of config.toml: the thresholds of the member metrics (stages,
//! price tiers, sensitivity, repurchase, value tiers), their defaults and a check that
//! names every bad key at once.
//!
//! Kept here so the thresholds live next to the metrics that read them; config.rs
//! embeds this struct as one table.

use serde::Deserialize;

/// Thresholds of the member metrics (DATA.md, "Member metrics").
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// Upper bounds (inclusive) of recency_days for active, silent, sleeping and dormant;
    /// above the last one a member is lost.
    pub stage_max_days: StageMaxDays,
    /// Nearest-rank percentiles of aov: `low` at or below the first, `high` above the second.
    pub price_tier_percentiles: [u32; 2],
    /// price_sensitivity tier: `high` at or above `high_at_least`, `low` below `low_below`.
    pub sensitivity_high_at_least: f64,
    pub sensitivity_low_below: f64,
    /// repurchase_due when recency_days >= interval_median_days x this factor.
    pub repurchase_factor: f64,
    pub value_tier: ValueTierConfig,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            stage_max_days: StageMaxDays::default(),
            price_tier_percentiles: [30, 80],
            sensitivity_high_at_least: 0.5,
            sensitivity_low_below: 0.2,
            repurchase_factor: 1.0,
            value_tier: ValueTierConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StageMaxDays {
    pub active: i32,
    pub silent: i32,
    pub sleeping: i32,
    pub dormant: i32,
}

impl Default for StageMaxDays {
    fn default() -> Self {
        StageMaxDays { active: 90, silent: 180, sleeping: 270, dormant: 359 }
    }
}

/// value_tier from RFM scores: `important` if R >= important_min_r and F + M >=
/// important_min_fm; `at_risk` if R <= at_risk_max_r and F + M >= at_risk_min_fm.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ValueTierConfig {
    pub important_min_r: u8,
    pub important_min_fm: u8,
    pub at_risk_max_r: u8,
    pub at_risk_min_fm: u8,
}

impl Default for ValueTierConfig {
    fn default() -> Self {
        ValueTierConfig { important_min_r: 4, important_min_fm: 8, at_risk_max_r: 2, at_risk_min_fm: 7 }
    }
}

impl ProfileConfig {
    /// Every problem with these thresholds, each naming its key.
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        let s = &self.stage_max_days;
        if !(0 <= s.active && s.active < s.silent && s.silent < s.sleeping && s.sleeping < s.dormant) {
            out.push(format!(
                "profile.stage_max_days: need 0 <= active < silent < sleeping < dormant, got {} {} {} {}",
                s.active, s.silent, s.sleeping, s.dormant
            ));
        }
        let [lo, hi] = self.price_tier_percentiles;
        if !(1 <= lo && lo < hi && hi <= 99) {
            out.push(format!("profile.price_tier_percentiles: need 1 <= low < high <= 99, got [{lo}, {hi}]"));
        }
        let (h, l) = (self.sensitivity_high_at_least, self.sensitivity_low_below);
        if !(0.0 <= l && l <= h && h <= 1.0) {
            out.push(format!(
                "profile.sensitivity_low_below / sensitivity_high_at_least: need 0 <= low <= high <= 1, got {l} and {h}"
            ));
        }
        if !(self.repurchase_factor > 0.0 && self.repurchase_factor.is_finite()) {
            out.push(format!("profile.repurchase_factor: must be a positive number, got {}", self.repurchase_factor));
        }
        let v = &self.value_tier;
        for (key, val, max) in [
            ("important_min_r", v.important_min_r, 5),
            ("at_risk_max_r", v.at_risk_max_r, 5),
            ("important_min_fm", v.important_min_fm, 10),
            ("at_risk_min_fm", v.at_risk_min_fm, 10),
        ] {
            if val > max {
                out.push(format!("profile.value_tier.{key}: must be at most {max}, got {val}"));
            }
        }
        out
    }
}
