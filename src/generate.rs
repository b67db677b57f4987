//! A deterministic generator of realistic sample data in the format of DATA.md, for
//! the README demo, the tests and the benchmarks: members with very different purchase
//! rates and an active window that ends when they churn, a personal price level and taste
//! for discounts, Zipf-like product popularity, baskets with planted co-purchase pairs,
//! browsing events and a catalog. The same seed always gives the same bytes.

use crate::domain::{days_from_civil, Timestamp, TsFmt};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// SplitMix64: tiny, fast, and stable across versions (no dependency can change the data).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn poisson(&mut self, mean: f64) -> u64 {
        if mean > 30.0 {
            return (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let (l, mut k, mut p) = ((-mean).exp(), 0, 1.0);
        loop {
            p *= self.f64();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
    fn pick(&mut self, cumulative: &[f64]) -> usize {
        let total = *cumulative.last().expect("non-empty distribution");
        let x = self.f64() * total;
        cumulative.partition_point(|&c| c <= x).min(cumulative.len() - 1)
    }
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights.map(|w| {
        acc += w;
        acc
    }).collect()
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub members: usize,
    /// Order lines to aim for (about 11 per member by default).
    pub lines: Option<usize>,
    pub seed: u64,
    /// The data ends here; it spans the two years before.
    pub end: Timestamp,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { members: 10_000, lines: None, seed: 42, end: i64::from(days_from_civil(2026, 11, 1)) * 86_400 }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy)]
pub struct GenerateSummary {
    pub members: usize,
    pub orders: usize,
    pub lines: usize,
    pub events: usize,
    pub products: usize,
}

const N_SKU: usize = 5000;
const N_CAT: u64 = 50;
const N_BRAND: u64 = 200;
const SPAN: i64 = 730 * 86_400;
const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "高", "林", "罗"];
const GIVEN: &[&str] = &["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "霞", "平"];
const CITIES: &[&str] = &["上海", "北京", "广州", "深圳", "杭州", "成都", "武汉", "南京", "重庆", "西安", "苏州", "天津", "长沙", "郑州", "青岛"];
const KINDS: &[&str] = &["连衣裙", "衬衫", "运动鞋", "背包", "面霜", "洗发水", "耳机", "保温杯", "茶叶", "坚果礼盒"];
const LINES: &[&str] = &["入门款", "实惠款", "经典款", "精选款", "臻品款"];
const BAND_BASE: [f64; 5] = [15.0, 40.0, 90.0, 200.0, 600.0];
const DISCOUNTS: [u32; 6] = [5, 10, 15, 20, 30, 50];

fn create(dir: &Path, name: &str) -> std::io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(1 << 20, File::create(dir.join(name))?))
}

/// Writes members.csv, orders.csv, events.csv, products.csv and planted_pairs.csv into `dir`.
pub fn generate(dir: &Path, opts: &GenerateOptions) -> std::io::Result<GenerateSummary> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(opts.seed ^ 0x005E_ED0F_4E4B_1D1E);
    let n_mem = opts.members.max(1);
    let n_lines = opts.lines.unwrap_or(n_mem * 11);

    // catalog: a price band per sku, Zipf popularity, category and brand
    let band: Vec<usize> = (0..N_SKU).map(|_| rng.below(5) as usize).collect();
    let price_cents: Vec<i64> =
        band.iter().map(|&b| ((BAND_BASE[b] * (0.35 * rng.normal()).exp() * 10.0).round() * 10.0) as i64 + 90).collect();
    let cat: Vec<u64> = (0..N_SKU).map(|_| rng.below(N_CAT)).collect();
    let brand: Vec<u64> = (0..N_SKU).map(|_| rng.below(N_BRAND)).collect();
    let mut pop: Vec<f64> = (1..=N_SKU).map(|r| 1.0 / (r as f64).powf(1.05)).collect();
    for i in (1..N_SKU).rev() {
        pop.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let band_skus: Vec<Vec<usize>> = (0..5).map(|b| (0..N_SKU).filter(|&s| band[s] == b).collect()).collect();
    let band_cum: Vec<Vec<f64>> = band_skus.iter().map(|s| cumulative(s.iter().map(|&i| pop[i]))).collect();
    let mut by_pop: Vec<usize> = (0..N_SKU).collect();
    by_pop.sort_by(|&a, &b| pop[b].total_cmp(&pop[a]));
    // planted pairs among popular skus: a basket with A gets B in 30% of cases
    let pairs: Vec<(usize, usize)> = (0..20).map(|i| (by_pop[i], by_pop[i + 100])).collect();
    let follow: std::collections::HashMap<usize, usize> = pairs.iter().copied().collect();

    // members: purchase rate, price level, discount taste, active window
    let rate: Vec<f64> = (0..n_mem).map(|_| (1.2 * rng.normal()).exp()).collect();
    let level: Vec<f64> = (0..n_mem).map(|_| (2.0 + rng.normal()).clamp(0.0, 4.0)).collect();
    let disc_taste: Vec<f64> = (0..n_mem).map(|_| rng.f64().powf(2.2) * 0.9).collect();
    let start = opts.end - SPAN;
    let signup: Vec<i64> = (0..n_mem).map(|_| start + (rng.f64() * SPAN as f64 * 0.9) as i64).collect();
    let churn: Vec<i64> =
        (0..n_mem).map(|i| (signup[i] + (-(1.0 - rng.f64()).ln() * 0.6 * SPAN as f64) as i64 + 86_400).min(opts.end - 1)).collect();

    let mut w = create(dir, "members.csv")?;
    writeln!(w, "member_id,name,email,phone,gender,birth_year,city,signup_ts,opted_in_email,opted_in_sms,tz")?;
    for (i, &signed_up) in signup.iter().enumerate() {
        let g = match rng.below(100) {
            0..=54 => "f",
            55..=94 => "m",
            _ => "",
        };
        let name = format!("{}{}", SURNAMES[rng.below(SURNAMES.len() as u64) as usize], GIVEN[rng.below(GIVEN.len() as u64) as usize]);
        let tz = if rng.below(20) == 0 { "Asia/Hong_Kong" } else { "" };
        writeln!(
            w,
            "m{i:07},{name},m{i:07}@example.com,+86138{i:08},{g},{},{},{},{},{},{tz}",
            1960 + rng.below(46),
            CITIES[rng.below(CITIES.len() as u64) as usize],
            TsFmt(signed_up),
            rng.f64() < 0.7,
            rng.f64() < 0.5,
        )?;
    }
    w.flush()?;

    // orders: a count per member by rate, times uniform in the member's window
    let avg_basket = 2.2;
    let n_orders_target = (n_lines as f64 / avg_basket).max(1.0);
    let rate_sum: f64 = rate.iter().sum();
    let mut orders: Vec<(i64, u32)> = Vec::with_capacity(n_orders_target as usize + n_mem);
    for i in 0..n_mem {
        let k = rng.poisson(rate[i] / rate_sum * n_orders_target);
        for _ in 0..k {
            let ts = signup[i] + (rng.f64() * (churn[i] - signup[i]) as f64) as i64;
            orders.push((ts, i as u32));
        }
        // some members buy twice on one day
        if k > 0 && rng.below(25) == 0 {
            let ts = signup[i] + (rng.f64() * (churn[i] - signup[i]) as f64) as i64;
            orders.push((ts, i as u32));
            orders.push(((ts + 3600).min(opts.end - 1), i as u32));
        }
    }
    orders.sort_unstable();
    let mut w = create(dir, "orders.csv")?;
    writeln!(w, "order_id,member_id,ts,sku,category,brand,unit_price,qty,discount_pct")?;
    let mut n_written = 0;
    let mut basket: Vec<usize> = Vec::new();
    for (o, &(ts, m)) in orders.iter().enumerate() {
        let m = m as usize;
        basket.clear();
        let size = 1 + rng.poisson(avg_basket - 1.0) as usize;
        for _ in 0..size {
            let b = (level[m] + 0.8 * rng.normal()).round().clamp(0.0, 4.0) as usize;
            let sku = band_skus[b][rng.pick(&band_cum[b])];
            basket.push(sku);
            if let Some(&follower) = follow.get(&sku) {
                if rng.f64() < 0.3 {
                    basket.push(follower);
                }
            }
        }
        basket.sort_unstable();
        basket.dedup();
        for &s in &basket {
            let qty = 1 + rng.poisson(0.25);
            let disc = if rng.f64() < disc_taste[m] { DISCOUNTS[rng.below(6) as usize] } else { 0 };
            writeln!(
                w,
                "o{o:08},m{m:07},{},sku{s:05},cat{:02},brand{:03},{}.{:02},{qty},{disc}",
                TsFmt(ts),
                cat[s],
                brand[s],
                price_cents[s] / 100,
                price_cents[s] % 100
            )?;
            n_written += 1;
        }
    }
    w.flush()?;

    // events: views, favorites and carts, many without a later purchase
    let n_ev = n_written / 2;
    let rate_cum = cumulative(rate.iter().copied());
    let mut events: Vec<(i64, u32, usize)> = (0..n_ev)
        .map(|_| {
            let m = rng.pick(&rate_cum);
            let ts = (signup[m] + (rng.f64() * (opts.end - signup[m]) as f64) as i64).min(opts.end - 1);
            let b = (level[m] + 0.8 * rng.normal()).round().clamp(0.0, 4.0) as usize;
            (ts, m as u32, band_skus[b][rng.pick(&band_cum[b])])
        })
        .collect();
    events.sort_unstable();
    let mut w = create(dir, "events.csv")?;
    writeln!(w, "member_id,ts,kind,sku,channel")?;
    for (ts, m, s) in &events {
        let kind = match rng.below(100) {
            0..=74 => "view",
            75..=89 => "favorite",
            _ => "cart",
        };
        let channel = ["pc", "mobile", "mobile", "app"][rng.below(4) as usize];
        writeln!(w, "m{m:07},{},{kind},sku{s:05},{channel}", TsFmt(*ts))?;
    }
    w.flush()?;

    let mut w = create(dir, "products.csv")?;
    writeln!(w, "sku,name,category,brand,price,url,in_stock")?;
    for s in 0..N_SKU {
        writeln!(
            w,
            "sku{s:05},{}{} {s:05},cat{:02},brand{:03},{}.{:02},https://shop.example/item/sku{s:05},{}",
            LINES[band[s]],
            KINDS[s % KINDS.len()],
            cat[s],
            brand[s],
            price_cents[s] / 100,
            price_cents[s] % 100,
            s % 37 != 0
        )?;
    }
    w.flush()?;

    let mut w = create(dir, "planted_pairs.csv")?;
    writeln!(w, "antecedent,consequent,planted_basket_confidence_at_least")?;
    for (a, b) in &pairs {
        writeln!(w, "sku{a:05},sku{b:05},0.3")?;
    }
    w.flush()?;
    Ok(GenerateSummary { members: n_mem, orders: orders.len(), lines: n_written, events: n_ev, products: N_SKU })
}
