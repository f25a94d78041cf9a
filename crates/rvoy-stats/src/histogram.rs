//! Histogram math: the subset of libcircllhist (base-10, two significant
//! digits, "circllhist") that Envoy's stats use, reproduced so that quantiles,
//! bucket counts and sums match Envoy's output bit for bit; plus the
//! per-thread lock-free recording cells and the statistics (quantiles, bucket
//! counts, count, sum) computed when histograms are merged.
//!
//! Values are recorded as Envoy does (`hist_insert_intscale(value, 0, 1)`), so
//! a recorded `u64` lands in one of [`NUM_BUCKETS`] buckets: the zero bucket,
//! or `(mantissa 10..=99, exponent 0..=18)` meaning `[m/10 * 10^e,
//! (m+1)/10 * 10^e)`. Values above `i64::MAX` are clamped to `i64::MAX`
//! (Envoy would reinterpret them as negative numbers).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Number of distinct buckets a non-negative integer can land in.
pub const NUM_BUCKETS: usize = 1 + 19 * 90;

/// The quantiles Envoy reports, in order.
pub const SUPPORTED_QUANTILES: [f64; 10] =
    [0.0, 0.25, 0.5, 0.75, 0.90, 0.95, 0.99, 0.995, 0.999, 1.0];

/// Envoy's default histogram bucket upper bounds.
pub const DEFAULT_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// `Histogram::PercentScale` in Envoy.
pub const PERCENT_SCALE: f64 = 1_000_000.0;

/// Unit of a histogram (Envoy's `Histogram::Unit`). Only `Percent` changes
/// rendering: recorded values are divided by [`PERCENT_SCALE`] on output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HistogramUnit {
    /// No unit given.
    #[default]
    Unspecified,
    /// Bytes.
    Bytes,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Percent, recorded scaled by [`PERCENT_SCALE`].
    Percent,
}

const POW10_U64: [u64; 20] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

/// Bucket index of a recorded value. Pure integer math: no allocation.
#[inline]
pub fn bucket_index(v: u64) -> usize {
    let v = v.min(i64::MAX as u64);
    if v == 0 {
        return 0;
    }
    if v < 10 {
        return 1 + (v as usize * 10 - 10);
    }
    let exp = v.ilog10() as usize; // >= 1
    let mant = (v / POW10_U64[exp - 1]) as usize; // 10..=99
    1 + exp * 90 + (mant - 10)
}

/// `(mantissa, exponent)` of a non-zero bucket index; `(0, 0)` for zero.
#[inline]
fn bucket_parts(idx: usize) -> (i32, i32) {
    if idx == 0 {
        (0, 0)
    } else {
        let i = idx - 1;
        (10 + (i % 90) as i32, (i / 90) as i32)
    }
}

fn pow10(exp: i32) -> f64 {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (-128..=127)
            .map(|e: i32| format!("1e{e}").parse::<f64>().unwrap_or(f64::NAN))
            .collect()
    });
    let i = (exp + 128).clamp(0, 255) as usize;
    table[i]
}

/// `hist_bucket_to_double`: the bucket's lower bound.
pub fn bucket_lower(idx: usize) -> f64 {
    let (val, exp) = bucket_parts(idx);
    if val == 0 {
        return 0.0;
    }
    (f64::from(val) / 10.0) * pow10(exp)
}

/// `hist_bucket_to_double_bin_width`.
pub fn bucket_width(idx: usize) -> f64 {
    let (val, exp) = bucket_parts(idx);
    if val == 0 {
        return 0.0;
    }
    pow10(exp) / 10.0
}

fn bucket_midpoint(idx: usize) -> f64 {
    let (val, _) = bucket_parts(idx);
    if val == 0 {
        return 0.0;
    }
    let bottom = bucket_lower(idx);
    let interval = bucket_width(idx);
    let top = bottom + interval;
    let ratio = bottom / (bottom + top);
    bottom + interval * ratio
}

/// A bucket of `double_to_hist_bucket`, as an ordering key on the real axis.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Threshold {
    Nan,
    Negative,
    Zero,
    Positive { exp: i32, val: i32 },
}

fn double_to_bucket(d: f64) -> Threshold {
    if d.is_nan() || d.is_infinite() {
        return Threshold::Nan;
    }
    if d == 0.0 {
        return Threshold::Zero;
    }
    if d < 0.0 {
        return Threshold::Negative;
    }
    let big_exp = d.log10().floor() as i32;
    if !(-128..=127).contains(&big_exp) {
        return if big_exp >= 0 {
            Threshold::Nan
        } else {
            Threshold::Zero
        };
    }
    let mut exp = big_exp;
    let scaled = d / pow10(exp) * 10.0;
    let mut val = (scaled + 1e-13).floor() as i32;
    if val == 100 {
        if exp < 127 {
            val /= 10;
            exp += 1;
        } else {
            return Threshold::Nan;
        }
    }
    if val == 0 {
        return Threshold::Zero;
    }
    Threshold::Positive { exp, val }
}

fn index_key(idx: usize) -> Threshold {
    let (val, exp) = bucket_parts(idx);
    if val == 0 {
        Threshold::Zero
    } else {
        Threshold::Positive { exp, val }
    }
}

/// A merged (main-thread) histogram: sparse, sorted by bucket, no zero counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseHist {
    buckets: Vec<(u16, u64)>,
}

impl SparseHist {
    /// Builds from `(bucket index, count)` pairs sorted by index.
    pub(crate) fn from_sorted(buckets: Vec<(u16, u64)>) -> Self {
        SparseHist { buckets }
    }

    /// Adds `other` into `self` (`hist_accumulate`).
    pub fn accumulate(&mut self, other: &SparseHist) {
        if other.buckets.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.buckets, &other.buckets);
        while i < a.len() || j < b.len() {
            if j >= b.len() || (i < a.len() && a[i].0 < b[j].0) {
                out.push(a[i]);
                i += 1;
            } else if i >= a.len() || b[j].0 < a[i].0 {
                out.push(b[j]);
                j += 1;
            } else {
                out.push((a[i].0, a[i].1.wrapping_add(b[j].1)));
                i += 1;
                j += 1;
            }
        }
        self.buckets = out;
    }

    /// Count of the bucket at `idx`, 0 if absent.
    pub(crate) fn count_at(&self, idx: u16) -> u64 {
        match self.buckets.binary_search_by_key(&idx, |b| b.0) {
            Ok(i) => self.buckets[i].1,
            Err(_) => 0,
        }
    }

    /// Records `count` samples of `value` (test and import helper).
    pub fn insert(&mut self, value: u64, count: u64) {
        if count == 0 {
            return;
        }
        let idx = bucket_index(value) as u16;
        match self.buckets.binary_search_by_key(&idx, |b| b.0) {
            Ok(i) => self.buckets[i].1 += count,
            Err(i) => self.buckets.insert(i, (idx, count)),
        }
    }

    /// `hist_sample_count`.
    pub fn sample_count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, b| a.wrapping_add(b.1))
    }

    /// `hist_approx_sum`: sum of bucket minimum-error midpoints.
    pub fn approx_sum(&self) -> f64 {
        let mut sum = 0.0;
        for &(idx, count) in &self.buckets {
            sum += bucket_midpoint(idx as usize) * count as f64;
        }
        sum
    }

    /// `hist_approx_count_below` (inclusive of the threshold's own bucket).
    pub fn approx_count_below(&self, threshold: f64) -> u64 {
        let tgt = double_to_bucket(threshold);
        let mut running = 0u64;
        for &(idx, count) in &self.buckets {
            if index_key(idx as usize) <= tgt && tgt != Threshold::Nan {
                running = running.wrapping_add(count);
            } else {
                break;
            }
        }
        running
    }

    /// `hist_approx_quantile` (Hyndman-Fan type 1 within buckets).
    pub fn approx_quantiles(&self, q_in: &[f64]) -> Vec<f64> {
        let mut q_out = vec![f64::NAN; q_in.len()];
        let bvs = &self.buckets;
        let mut total_cnt = 0.0f64;
        for &(_, c) in bvs {
            total_cnt += c as f64;
        }
        if q_in.windows(2).any(|w| w[0] > w[1]) {
            return q_out;
        }
        if total_cnt == 0.0 {
            return q_out;
        }
        for (o, q) in q_out.iter_mut().zip(q_in) {
            if !(0.0..=1.0).contains(q) {
                return vec![f64::NAN; q_in.len()];
            }
            *o = total_cnt * q;
        }
        let (mut bucket_width_v, mut bucket_left, mut lower_cnt, mut upper_cnt) =
            (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let track = |idx: usize, bw: &mut f64, bl: &mut f64, lc: &mut f64, uc: &mut f64| {
            let (bucket, count) = bvs[idx];
            *bw = bucket_width(bucket as usize);
            *bl = bucket_lower(bucket as usize);
            *lc = *uc;
            *uc = *lc + count as f64;
        };
        let used = bvs.len();
        let mut i_b = 0usize;
        while i_b < used {
            if bvs[i_b].1 == 0 {
                i_b += 1;
                continue;
            }
            track(
                i_b,
                &mut bucket_width_v,
                &mut bucket_left,
                &mut lower_cnt,
                &mut upper_cnt,
            );
            break;
        }
        for o in q_out.iter_mut() {
            while i_b + 1 < used && upper_cnt < *o {
                i_b += 1;
                track(
                    i_b,
                    &mut bucket_width_v,
                    &mut bucket_left,
                    &mut lower_cnt,
                    &mut upper_cnt,
                );
            }
            if bucket_width_v == 0.0 {
                *o = bucket_left;
            } else {
                let n = bvs[i_b.min(used - 1)].1;
                let qn = *o;
                let k = (qn - lower_cnt).ceil();
                let denom = (n.wrapping_add(1)) as f64;
                if k == 0.0 {
                    *o = bucket_left + 1.0 / denom * bucket_width_v;
                } else {
                    *o = bucket_left + k / denom * bucket_width_v;
                }
            }
        }
        q_out
    }

    /// Iterates `(lower_bound, width, count)` per non-empty bucket.
    pub fn detailed(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.buckets
            .iter()
            .map(|&(idx, c)| (bucket_lower(idx as usize), bucket_width(idx as usize), c))
    }

    /// Number of non-empty buckets.
    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }
}

/// Statistics computed from a merged histogram: Envoy's
/// `HistogramStatisticsImpl`.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramStatistics {
    /// One value per [`SUPPORTED_QUANTILES`] entry (NaN when empty).
    pub quantiles: [f64; 10],
    /// Cumulative count at or below each supported bucket bound.
    pub buckets: Vec<u64>,
    /// Number of samples.
    pub sample_count: u64,
    /// Approximate sum of samples.
    pub sample_sum: f64,
}

impl HistogramStatistics {
    /// Statistics of an empty histogram over `supported_buckets`.
    pub fn empty(supported_buckets: &[f64]) -> Self {
        HistogramStatistics {
            quantiles: [f64::NAN; 10],
            buckets: vec![0; supported_buckets.len()],
            sample_count: 0,
            sample_sum: 0.0,
        }
    }

    /// Computes statistics of `h` (`HistogramStatisticsImpl::refresh`).
    pub fn compute(h: &SparseHist, supported_buckets: &[f64], unit: HistogramUnit) -> Self {
        let q = h.approx_quantiles(&SUPPORTED_QUANTILES);
        let mut quantiles = [f64::NAN; 10];
        for (d, s) in quantiles.iter_mut().zip(q) {
            *d = s;
        }
        let mut sample_sum = h.approx_sum();
        let percent = unit == HistogramUnit::Percent;
        if percent {
            for v in quantiles.iter_mut() {
                *v /= PERCENT_SCALE;
            }
            sample_sum /= PERCENT_SCALE;
        }
        let buckets = supported_buckets
            .iter()
            .map(|&b| h.approx_count_below(if percent { b * PERCENT_SCALE } else { b }))
            .collect();
        HistogramStatistics {
            quantiles,
            buckets,
            sample_count: h.sample_count(),
            sample_sum,
        }
    }

    /// Per-bucket (non-cumulative) counts.
    pub fn disjoint_buckets(&self) -> Vec<u64> {
        let mut prev = 0u64;
        self.buckets
            .iter()
            .map(|&b| {
                let d = b.wrapping_sub(prev);
                prev = b;
                d
            })
            .collect()
    }
}

/// One thread's recording cells for one histogram. Written only by its owner
/// thread (plain load+store) or, for the shared fallback shard, by atomic
/// read-modify-write; read concurrently by the main thread when merging.
pub(crate) struct HistShard {
    zero: AtomicU64,
    blocks: [OnceLock<Box<[AtomicU64; 90]>>; 19],
}

impl Default for HistShard {
    fn default() -> Self {
        HistShard {
            zero: AtomicU64::new(0),
            blocks: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

#[inline]
pub(crate) fn bump(cell: &AtomicU64, n: u64, shared: bool) {
    if shared {
        cell.fetch_add(n, Ordering::Relaxed);
    } else {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

impl HistShard {
    /// Records one value. Allocates only the first time a decade is touched.
    #[inline]
    pub(crate) fn record(&self, value: u64, shared: bool) {
        let idx = bucket_index(value);
        if idx == 0 {
            bump(&self.zero, 1, shared);
        } else {
            let i = idx - 1;
            let block = self.blocks[i / 90]
                .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
            bump(&block[i % 90], 1, shared);
        }
    }

    /// Adds this shard's running totals into `dense` (indexed by bucket),
    /// noting newly non-zero buckets in `touched`.
    pub(crate) fn add_into(&self, dense: &mut [u64], touched: &mut Vec<u16>) -> bool {
        let mut any = false;
        let z = self.zero.load(Ordering::Relaxed);
        if z != 0 {
            if dense[0] == 0 {
                touched.push(0);
            }
            dense[0] = dense[0].wrapping_add(z);
            any = true;
        }
        for (b, block) in self.blocks.iter().enumerate() {
            if let Some(block) = block.get() {
                for (j, c) in block.iter().enumerate() {
                    let c = c.load(Ordering::Relaxed);
                    if c != 0 {
                        let k = 1 + b * 90 + j;
                        if dense[k] == 0 {
                            touched.push(k as u16);
                        }
                        dense[k] = dense[k].wrapping_add(c);
                        any = true;
                    }
                }
            }
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_indices() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_lower(bucket_index(1)), 1.0);
        assert_eq!(bucket_width(bucket_index(1)), 0.1);
        assert_eq!(bucket_lower(bucket_index(9)), 9.0);
        assert_eq!(bucket_lower(bucket_index(10)), 10.0);
        assert_eq!(bucket_width(bucket_index(10)), 1.0);
        assert_eq!(bucket_lower(bucket_index(123)), 120.0);
        assert_eq!(bucket_width(bucket_index(123)), 10.0);
        assert_eq!(bucket_lower(bucket_index(100)), 100.0);
        assert!(bucket_index(u64::MAX) < NUM_BUCKETS);
        assert_eq!(bucket_index(i64::MAX as u64), bucket_index(u64::MAX));
    }

    #[test]
    fn single_value_quantiles() {
        // Envoy prints `P0(nan,1.05) ... P100(nan,1.05)` for one sample of 1.
        let mut h = SparseHist::default();
        h.insert(1, 1);
        let q = h.approx_quantiles(&SUPPORTED_QUANTILES);
        assert!(q.iter().all(|&v| v == 1.05), "{q:?}");
    }

    #[test]
    fn one_to_hundred_plus_zeros() {
        // Observed from Envoy 1.40 (cluster.backend.upstream_rq_body_size with
        // four bodiless requests and bodies of 1..=100 bytes):
        // P0(nan,0) P25(nan,22.5) P50(nan,48.5) P75(nan,74.5) P90(nan,90.5)
        // P95(nan,95.5) P99(nan,99.5) P99.5(nan,105) P99.9(nan,105) P100(nan,105)
        // and _sum 5099.6294743269991158740594983101.
        let mut h = SparseHist::default();
        h.insert(0, 4);
        for v in 1..=100 {
            h.insert(v, 1);
        }
        let q = h.approx_quantiles(&SUPPORTED_QUANTILES);
        assert_eq!(
            q,
            vec![0.0, 22.5, 48.5, 74.5, 90.5, 95.5, 99.5, 105.0, 105.0, 105.0]
        );
        assert_eq!(
            crate::numfmt::fmt_g(h.approx_sum(), 32),
            "5099.6294743269991158740594983101"
        );
        let stats = HistogramStatistics::compute(&h, &DEFAULT_BUCKETS, HistogramUnit::Unspecified);
        assert_eq!(&stats.buckets[..8], &[4, 5, 9, 14, 29, 54, 104, 104]);
        assert_eq!(stats.disjoint_buckets()[..8], [4, 1, 4, 5, 15, 25, 50, 0]);
    }
}
