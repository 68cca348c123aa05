//! What the soak counts: the latency of every request by kind, the
//! scenarios run, and every unexpected answer (an error, with the first few
//! kept as samples and printed as they happen).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::report::render;

/// Errors printed as they happen and kept for the report; the rest are counted.
const ERROR_SAMPLES: usize = 20;

/// The kinds of request the soak sends, each with its own latency figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One-shot `PUT` answered before its body (a hit, or an input already stored).
    PutHit,
    /// One-shot `PUT` of a new input: `100 Continue`, the body, the result.
    PutMiss,
    /// `POST /v1/ops`.
    Create,
    /// `PUT /v1/ops/{key}/blocks/{n}`.
    Block,
    /// `PATCH /v1/ops/{key}`.
    Patch,
    /// `HEAD /v1/ops/{key}`.
    Head,
    /// `GET /v1/ops/{key}`.
    Status,
    /// `GET …/result` of a complete entry (whole, `Range` or `If-None-Match`).
    Result,
    /// `GET …/result` with `Prefer: wait` on an entry another client computes.
    ResultWait,
    /// `DELETE /v1/ops/{key}`.
    Delete,
    /// tus `POST /files/`.
    TusCreate,
    /// tus `PATCH /files/{id}`.
    TusPatch,
    /// tus `HEAD /files/{id}`.
    TusHead,
    /// `GET /files/{id}/result` with `Prefer: wait`.
    TusResult,
    /// tus `DELETE /files/{id}` (termination).
    TusDelete,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::PutHit,
        Kind::PutMiss,
        Kind::Create,
        Kind::Block,
        Kind::Patch,
        Kind::Head,
        Kind::Status,
        Kind::Result,
        Kind::ResultWait,
        Kind::Delete,
        Kind::TusCreate,
        Kind::TusPatch,
        Kind::TusHead,
        Kind::TusResult,
        Kind::TusDelete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::PutHit => "PUT one-shot, answered before the body",
            Kind::PutMiss => "PUT one-shot, 100 Continue + body",
            Kind::Create => "POST /v1/ops",
            Kind::Block => "PUT block",
            Kind::Patch => "PATCH /v1",
            Kind::Head => "HEAD /v1",
            Kind::Status => "GET status",
            Kind::Result => "GET result, ready",
            Kind::ResultWait => "GET result, Prefer: wait",
            Kind::Delete => "DELETE /v1",
            Kind::TusCreate => "tus POST /files/",
            Kind::TusPatch => "tus PATCH",
            Kind::TusHead => "tus HEAD",
            Kind::TusResult => "tus GET result, Prefer: wait",
            Kind::TusDelete => "tus DELETE",
        }
    }

    fn index(self) -> usize {
        Kind::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every kind is listed")
    }
}

/// Everything counted during a run; shared by every client.
pub struct Recorder {
    started: Instant,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Latencies in microseconds, per kind.
    latencies: Mutex<Vec<Vec<u32>>>,
    kind_errors: Mutex<Vec<u64>>,
    samples: Mutex<Vec<String>>,
    /// (name, ran to the end, failed) per scenario, in order of first use.
    scenarios: Mutex<Vec<(&'static str, u64, u64)>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latencies: Mutex::new(vec![Vec::new(); Kind::ALL.len()]),
            kind_errors: Mutex::new(vec![0; Kind::ALL.len()]),
            samples: Mutex::new(Vec::new()),
            scenarios: Mutex::new(Vec::new()),
        }
    }

    /// One answered request of `kind` that took `took` (checked or not).
    pub fn request(&self, kind: Kind, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let micros = took.as_micros().min(u32::MAX as u128) as u32;
        self.latencies.lock().expect("not poisoned")[kind.index()].push(micros);
    }

    /// An unexpected answer (or none) to a request of `kind`, from `scenario`.
    pub fn error(&self, scenario: &str, kind: Kind, what: &str) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        self.kind_errors.lock().expect("not poisoned")[kind.index()] += 1;
        if n as usize <= ERROR_SAMPLES {
            let line = format!(
                "[{:>7.1} s] {scenario}: {}: {what}",
                self.started.elapsed().as_secs_f64(),
                kind.name()
            );
            eprintln!("soak: error {line}");
            self.samples.lock().expect("not poisoned").push(line);
        }
    }

    /// A scenario ran, to its end or to its first error.
    pub fn scenario(&self, name: &'static str, failed: bool) {
        let mut all = self.scenarios.lock().expect("not poisoned");
        let i = match all.iter().position(|(n, ..)| *n == name) {
            Some(i) => i,
            None => {
                all.push((name, 0, 0));
                all.len() - 1
            }
        };
        if failed {
            all[i].2 += 1;
        } else {
            all[i].1 += 1;
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The first errors, as printed.
    pub fn error_samples(&self) -> Vec<String> {
        self.samples.lock().expect("not poisoned").clone()
    }

    /// Count, p50, p99, max and errors per request kind.
    pub fn latency_table(&self) -> String {
        let mut all = self.latencies.lock().expect("not poisoned");
        let errors = self.kind_errors.lock().expect("not poisoned");
        let ms = |us: u32| format!("{:.1}", us as f64 / 1000.0);
        let rows: Vec<Vec<String>> = Kind::ALL
            .iter()
            .zip(all.iter_mut())
            .zip(errors.iter())
            .filter(|((_, l), e)| !l.is_empty() || **e > 0)
            .map(|((kind, l), e)| {
                l.sort_unstable();
                vec![
                    kind.name().to_owned(),
                    l.len().to_string(),
                    ms(percentile(l, 50.0)),
                    ms(percentile(l, 99.0)),
                    ms(l.last().copied().unwrap_or(0)),
                    e.to_string(),
                ]
            })
            .collect();
        render(
            &["request", "count", "p50 ms", "p99 ms", "max ms", "errors"],
            &rows,
        )
    }

    /// How often each scenario ran and failed.
    pub fn scenario_table(&self) -> String {
        let all = self.scenarios.lock().expect("not poisoned");
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|(name, ok, failed)| vec![name.to_string(), ok.to_string(), failed.to_string()])
            .collect();
        render(&["scenario", "ran", "failed"], &rows)
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// The nearest-rank percentile `p` (0–100) of sorted values; 0 when empty.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn errors_and_latencies_are_counted_per_kind() {
        let r = Recorder::new();
        r.request(Kind::Block, Duration::from_millis(3));
        r.request(Kind::Block, Duration::from_millis(5));
        r.error("blocks", Kind::Block, "expected 204, got 500");
        r.scenario("blocks", true);
        r.scenario("blocks", false);
        assert_eq!((r.requests(), r.errors()), (2, 1));
        let t = r.latency_table();
        assert!(t.contains("PUT block") && !t.contains("PATCH"), "{t}");
        assert!(r.scenario_table().contains("blocks"));
        assert!(r.error_samples()[0].contains("expected 204, got 500"));
    }
}
