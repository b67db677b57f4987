//! A member's purchase history in the shape both models read: repeat frequency,
//! recency and age in a time unit, plus the mean spend of the repeat purchases.
//!
//! Follows Fader, Hardie & Lee (2005) and lifetimes' `summary_data_from_transaction_data`
//! exactly: purchases are counted on distinct days (all orders of one day are one
//! purchase, their spend summed); the first day is not a repeat; `frequency` x is the
//! number of later distinct days; `recency` t_x is last day - first day and `age` T is
//! as-of day - first day, both divided by the unit's length in days (so weeks are
//! days / 7, as in the papers, not counts of distinct calendar weeks); the monetary
//! value for Gamma-Gamma is the mean spend over the repeat days only (0 with none).
//! Orders after the as-of day are ignored.

use serde::{Deserialize, Serialize};

/// The time unit the models are fitted in. Only scales the parameter alpha (and the
/// meaning of t_x, T and horizons); the fitted r, a, b do not depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Day,
    Week,
}

impl TimeUnit {
    /// Length of the unit in days.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Day => 1.0,
            TimeUnit::Week => 7.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Day => "day",
            TimeUnit::Week => "week",
        }
    }
}

impl std::str::FromStr for TimeUnit {
    type Err = UnknownTimeUnit;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(TimeUnit::Day),
            "week" => Ok(TimeUnit::Week),
            other => Err(UnknownTimeUnit(other.to_string())),
        }
    }
}

/// A time unit name other than `day` or `week`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown time unit {0:?}: expected \"day\" or \"week\"")]
pub struct UnknownTimeUnit(pub String);

/// One order day of a member and what was spent that day (or on one order of that
/// day: entries with the same day are summed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DaySpend {
    /// UTC calendar day, as days since 1970-01-01.
    pub day: i32,
    /// Spend in minor currency units (cents).
    pub cents: i64,
}

/// What the models know about one member as of a date, in a [`TimeUnit`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PurchaseHistory {
    /// x: repeat purchases, counted on distinct days after the first purchase day.
    pub frequency: f64,
    /// t_x: time from the first to the last purchase day.
    pub recency: f64,
    /// T: time from the first purchase day to the as-of day.
    pub age: f64,
    /// Mean spend per repeat purchase day in currency units (cents / 100); 0 when
    /// there is no repeat purchase.
    pub mean_repeat_value: f64,
}

impl PurchaseHistory {
    /// Builds the history from a member's orders, as of `as_of` (inclusive). The
    /// entries may come in any order and may repeat a day. `None` when the member
    /// has no order on or before `as_of`.
    pub fn from_order_days(
        orders: &[DaySpend],
        as_of: i32,
        unit: TimeUnit,
    ) -> Option<PurchaseHistory> {
        let in_order = orders.windows(2).all(|w| w[0].day <= w[1].day);
        let sorted;
        let orders = if in_order {
            orders
        } else {
            let mut copy = orders.to_vec();
            copy.sort_unstable_by_key(|o| o.day);
            sorted = copy;
            &sorted
        };
        let mut days = orders.iter().filter(|o| o.day <= as_of);
        let first = days.next()?;
        let mut last_day = first.day;
        let mut repeat_days = 0u32;
        let mut repeat_cents = 0i64;
        for o in days {
            if o.day != last_day {
                repeat_days += 1;
                last_day = o.day;
            }
            if o.day != first.day {
                repeat_cents = repeat_cents.saturating_add(o.cents);
            }
        }
        let unit_days = unit.days();
        let mean_repeat_value = if repeat_days == 0 {
            0.0
        } else {
            repeat_cents as f64 / 100.0 / f64::from(repeat_days)
        };
        Some(PurchaseHistory {
            frequency: f64::from(repeat_days),
            recency: f64::from(last_day - first.day) / unit_days,
            age: f64::from(as_of - first.day) / unit_days,
            mean_repeat_value,
        })
    }
}

/// Distinct order days in the holdout window (`calibration_end`, `holdout_end`]:
/// the actual repeat purchases a fit check compares with the model's expectation.
pub fn purchases_between(orders: &[DaySpend], calibration_end: i32, holdout_end: i32) -> u32 {
    let mut days: Vec<i32> = orders
        .iter()
        .map(|o| o.day)
        .filter(|&d| d > calibration_end && d <= holdout_end)
        .collect();
    days.sort_unstable();
    days.dedup();
    days.len() as u32
}

/// One member's calibration history as of `calibration_end` and their purchases in
/// (`calibration_end`, `holdout_end`], as lifetimes' `calibration_and_holdout_data`
/// gives them: `None` for a member whose first order comes after `calibration_end`.
/// Feed the pairs to [`super::FittedModel::holdout_check`].
pub fn calibration_and_holdout(
    orders: &[DaySpend],
    calibration_end: i32,
    holdout_end: i32,
    unit: TimeUnit,
) -> Option<(PurchaseHistory, u32)> {
    let history = PurchaseHistory::from_order_days(orders, calibration_end, unit)?;
    Some((
        history,
        purchases_between(orders, calibration_end, holdout_end),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders(list: &[(i32, i64)]) -> Vec<DaySpend> {
        list.iter()
            .map(|&(day, cents)| DaySpend { day, cents })
            .collect()
    }

    /// (orders as (day, cents), as_of, unit) -> (x, t_x, T, mean repeat value)
    type Case = (
        &'static [(i32, i64)],
        i32,
        TimeUnit,
        Option<(f64, f64, f64, f64)>,
    );

    #[test]
    fn builds_history_like_lifetimes_summary() {
        let cases: &[Case] = &[
            // CDNOW customer 1: 1997-01-01, 01-18, 08-02 (and 12-12 after the end), weeks.
            (
                &[(9862, 2933), (9879, 2973), (10075, 1496), (10207, 2648)],
                10134,
                TimeUnit::Week,
                Some((2.0, 213.0 / 7.0, 272.0 / 7.0, 22.345)),
            ),
            // one purchase only: x = 0, t_x = 0, no monetary value
            (
                &[(100, 500)],
                130,
                TimeUnit::Day,
                Some((0.0, 0.0, 30.0, 0.0)),
            ),
            // two orders on the first day are one purchase; same-day repeats are summed
            (
                &[(100, 500), (100, 700), (110, 300), (110, 100), (120, 1000)],
                120,
                TimeUnit::Day,
                Some((2.0, 20.0, 20.0, 7.0)),
            ),
            // unsorted input gives the same answer
            (
                &[(120, 1000), (110, 300), (100, 700), (110, 100), (100, 500)],
                120,
                TimeUnit::Day,
                Some((2.0, 20.0, 20.0, 7.0)),
            ),
            // nothing on or before as_of
            (&[(200, 100)], 150, TimeUnit::Day, None),
            (&[], 150, TimeUnit::Day, None),
            // negative days (before 1970) work too
            (
                &[(-10, 100), (-3, 250)],
                4,
                TimeUnit::Week,
                Some((1.0, 1.0, 2.0, 2.5)),
            ),
        ];
        for (list, as_of, unit, expected) in cases {
            let got = PurchaseHistory::from_order_days(&orders(list), *as_of, *unit);
            match (got, expected) {
                (None, None) => {}
                (Some(h), Some((x, tx, t, m))) => {
                    assert_eq!(h.frequency, *x, "{list:?}");
                    assert!((h.recency - tx).abs() < 1e-12, "{list:?}: {h:?}");
                    assert!((h.age - t).abs() < 1e-12, "{list:?}: {h:?}");
                    assert!((h.mean_repeat_value - m).abs() < 1e-12, "{list:?}: {h:?}");
                }
                other => panic!("{list:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn counts_distinct_holdout_days() {
        let o = orders(&[(10, 1), (20, 1), (20, 5), (25, 1), (31, 1)]);
        assert_eq!(purchases_between(&o, 10, 30), 2);
        assert_eq!(purchases_between(&o, 9, 31), 4);
        assert_eq!(purchases_between(&o, 31, 40), 0);
    }

    #[test]
    fn splits_calibration_and_holdout() {
        let o = orders(&[(10, 100), (15, 200), (20, 300), (20, 50), (31, 1)]);
        let (h, holdout) =
            calibration_and_holdout(&o, 15, 30, TimeUnit::Day).expect("first order in calibration");
        assert_eq!(
            (h.frequency, h.recency, h.age, h.mean_repeat_value),
            (1.0, 5.0, 5.0, 2.0)
        );
        assert_eq!(holdout, 1);
        assert_eq!(calibration_and_holdout(&o, 9, 30, TimeUnit::Day), None);
    }

    #[test]
    fn parses_units() {
        assert_eq!("week".parse::<TimeUnit>(), Ok(TimeUnit::Week));
        assert_eq!("day".parse::<TimeUnit>(), Ok(TimeUnit::Day));
        assert!("month".parse::<TimeUnit>().is_err());
        assert_eq!(
            serde_json::to_string(&TimeUnit::Week).unwrap_or_default(),
            "\"week\""
        );
    }
}
