//! Deterministic synthetic purchases for the bundle tests (test-only).
//!
//! About 10k members with log-normal purchase rates, baskets of 1 + Poisson(1.2) SKUs
//! drawn from a Zipf-like popularity (exponent 1.05, shuffled over the catalog), and
//! planted co-purchase pairs: a basket holding A also gets B in 30% of cases. The same
//! seed always gives the same lines.

/// One order line.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub order: String,
    pub member: String,
    pub sku: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Synth {
    pub lines: Vec<Line>,
    /// (A, B): B was added to 30% of the baskets holding A.
    pub planted: Vec<(String, String)>,
}

pub(crate) const PLANTED_RATE: f64 = 0.3;

/// SplitMix64: small, fast, and enough for test data.
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
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }

    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn poisson(&mut self, lambda: f64) -> usize {
        let limit = (-lambda).exp();
        let mut k = 0;
        let mut p = self.unit();
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }
}

pub(crate) fn generate(members: usize, skus: usize, seed: u64) -> Synth {
    let mut rng = Rng(seed);
    // Popularity weight 1/rank^1.05, ranks shuffled over the catalog.
    let mut by_rank: Vec<usize> = (0..skus).collect();
    for i in (1..skus).rev() {
        by_rank.swap(i, rng.below(i + 1));
    }
    let mut cumulative = Vec::with_capacity(skus);
    let mut total = 0.0;
    for rank in 0..skus {
        total += 1.0 / ((rank + 1) as f64).powf(1.05);
        cumulative.push(total);
    }
    let name = |s: usize| format!("sku{s:05}");
    let planted: Vec<(usize, usize)> = (0..10)
        .map(|i| (by_rank[i * 3], by_rank[i * 3 + 60]))
        .collect();

    let mut lines = Vec::new();
    let mut order_no = 0usize;
    for m in 0..members {
        let rate = (1.0 * rng.normal()).exp().min(30.0);
        let orders = 1 + rng.poisson(3.5 * rate * 0.6);
        for _ in 0..orders {
            order_no += 1;
            let size = 1 + rng.poisson(1.2);
            let mut basket = Vec::with_capacity(size + 1);
            for _ in 0..size {
                let x = rng.unit() * total;
                let rank = cumulative.partition_point(|&c| c < x).min(skus - 1);
                basket.push(by_rank[rank]);
            }
            let mut extra = Vec::new();
            for &s in &basket {
                for &(a, b) in &planted {
                    if s == a && rng.unit() < PLANTED_RATE {
                        extra.push(b);
                    }
                }
            }
            basket.extend(extra);
            for s in basket {
                lines.push(Line {
                    order: format!("o{order_no:07}"),
                    member: format!("m{m:05}"),
                    sku: name(s),
                });
            }
        }
    }
    Synth {
        lines,
        planted: planted
            .into_iter()
            .map(|(a, b)| (name(a), name(b)))
            .collect(),
    }
}
