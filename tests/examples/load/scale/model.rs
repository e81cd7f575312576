//! The workload and what per-worker TTL caches should make of it: a seeded Zipf sampler, the
//! steady-state read rate of a TTL cache under it, and a replay of a recorded run through the
//! same caches, which checks that model against what the companion counted.

use std::collections::HashMap;

/// splitmix64: small, seeded and repeatable; the benchmark needs the same draws every run,
/// not unpredictability.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits as a fraction.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf popularity over `n` sessions: rank k (from 1) is asked for with probability
/// proportional to k^-s.
pub struct Zipf {
    probabilities: Vec<f64>,
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n.max(1)).map(|k| (k as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        let probabilities: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let mut sum = 0.0;
        let cumulative = probabilities
            .iter()
            .map(|p| {
                sum += p;
                sum
            })
            .collect();
        Self {
            probabilities,
            cumulative,
        }
    }

    /// A session's index (0 is the most popular), by inverting the cumulative distribution.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.probabilities.len() - 1)
    }

    #[cfg(test)]
    pub fn probability(&self, index: usize) -> f64 {
        self.probabilities.get(index).copied().unwrap_or(0.0)
    }

    /// Companion reads per second from one worker that gets `rate` requests per second, each
    /// for session k with probability p_k independently of the others (Poisson), and keeps
    /// every answer for `ttl` seconds from when it was read (the filter's cache: a hit does
    /// not extend an entry). Each session then alternates one read, `ttl` seconds of hits and
    /// a wait for its next request (mean 1 / (rate p_k)): a renewal process with
    /// rate p_k / (1 + rate p_k ttl) reads per second. `ttl` 0 is a read per request.
    pub fn reads_per_second(&self, rate: f64, ttl: f64) -> f64 {
        self.probabilities
            .iter()
            .map(|p| rate * p / (1.0 + rate * p * ttl))
            .sum()
    }

    /// The entries fresh at once in that worker's cache, on average (the fraction of time
    /// each session is cached, summed): what `cache.max_entries` must hold for the model to
    /// apply.
    pub fn fresh_entries(&self, rate: f64, ttl: f64) -> f64 {
        self.probabilities
            .iter()
            .map(|p| rate * p * ttl / (1.0 + rate * p * ttl))
            .sum()
    }
}

/// One request the benchmark sent, for the replay.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Seconds since the run started, when it was sent.
    pub at: f64,
    pub proxy: usize,
    /// The client connection it went over: a connection stays on one worker.
    pub connection: usize,
    pub session: usize,
}

/// The reads the run's requests would cause in the window [from, to) if each proxy's
/// connections were spread over its `workers` in turn (edge-dev's workers race for each
/// accept, so the real spread is only close to even) and every worker kept a TTL cache of
/// `ttl` seconds, cold at the start. Revocations are not replayed: the few sessions logged
/// out during the run make up a handful of reads.
pub fn replay(sent: &[Sent], workers: usize, ttl: f64, from: f64, to: f64) -> u64 {
    let mut ordered = sent.to_vec();
    ordered.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut read_at: HashMap<(usize, usize, usize), f64> = HashMap::new();
    let mut reads = 0;
    for request in ordered {
        let key = (
            request.proxy,
            request.connection % workers.max(1),
            request.session,
        );
        let fresh = ttl > 0.0
            && read_at
                .get(&key)
                .is_some_and(|&then| request.at < then + ttl);
        if !fresh {
            read_at.insert(key, request.at);
            if request.at >= from && request.at < to {
                reads += 1;
            }
        }
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_draws_follow_the_distribution() {
        let zipf = Zipf::new(100, 1.0);
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 100];
        let draws = 200_000;
        for _ in 0..draws {
            counts[zipf.sample(&mut rng)] += 1;
        }
        for k in [0, 1, 9, 99] {
            let expected = zipf.probability(k) * f64::from(draws);
            let got = f64::from(counts[k]);
            assert!(
                (got - expected).abs() < 5.0 * expected.sqrt() + 5.0,
                "rank {k}: {got} against {expected}"
            );
        }
    }

    #[test]
    fn the_model_agrees_with_a_replay_of_poisson_requests() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(11);
        let (rate, ttl, seconds) = (200.0, 2.0, 600.0);
        let mut at = 0.0;
        let mut sent = Vec::new();
        while at < seconds {
            at += -(1.0 - rng.unit()).ln() / rate;
            sent.push(Sent {
                at,
                proxy: 0,
                connection: 0,
                session: zipf.sample(&mut rng),
            });
        }
        let measured = replay(&sent, 1, ttl, 60.0, seconds) as f64 / (seconds - 60.0);
        let model = zipf.reads_per_second(rate, ttl);
        assert!(
            (measured / model - 1.0).abs() < 0.03,
            "replay {measured:.1}/s against the model's {model:.1}/s"
        );
        assert!(
            (zipf.reads_per_second(rate, 0.0) - rate).abs() < 1e-9,
            "without a cache every request reads"
        );
    }
}
