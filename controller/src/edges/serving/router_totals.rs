//! What a router counts per version for `/metrics`, and the cheap generator that samples a busy
//! window's latencies.

/// The upper bounds (seconds) of the latency histogram's buckets: 1 ms to 16 s, doubling.
pub const BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// Everything a router observed for one version since it started: what `/metrics` exports.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Requests forwarded.
    pub requests: u64,
    /// Of them, answered 5xx or not at all.
    pub errors: u64,
    /// Requests per latency bucket ([`BUCKETS`], then one for longer).
    pub buckets: Vec<u64>,
    /// Their durations added up, in seconds.
    pub seconds: f64,
    /// Requests mirrored to it as a shadow and answered or given up on (none served).
    #[serde(default)]
    pub mirrored: u64,
    /// Of them, answered as the serving version answered.
    #[serde(default)]
    pub agreed: u64,
    /// Requests in its share not mirrored because too many mirrors were in flight.
    #[serde(default)]
    pub skipped: u64,
}

impl Totals {
    pub(super) fn add(&mut self, failed: bool, seconds: f64) {
        self.requests += 1;
        if failed {
            self.errors += 1;
        }
        if self.buckets.len() != BUCKETS.len() + 1 {
            self.buckets = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i] += 1;
        self.seconds += seconds;
    }
}

/// A step of xorshift64: cheap, uniform enough to sample latencies.
pub(super) fn next_random(state: &mut u64) -> u64 {
    let mut x = if *state == 0 {
        0x9E37_79B9_7F4A_7C15
    } else {
        *state
    };
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}
