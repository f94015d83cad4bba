//! Process-wide counters and the etcd latency histogram behind `/metrics`.
//! Hand-written Prometheus text: a few atomics do not need a crate.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the etcd latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The agent's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Whether this agent is the leader now.
    pub is_leader: AtomicBool,
    /// Leader changes this agent has seen.
    pub leader_changes: AtomicU64,
    /// Guarded writes rejected because the leader key had changed.
    pub not_leader_rejections: AtomicU64,
    /// Latency of every etcd request the store makes.
    pub etcd_latency: Histogram,
}

impl Metrics {
    /// Renders the process metrics plus the cluster gauges computed at scrape
    /// time (`hosts_up`, tasks by state).
    pub fn render(&self, hosts_up: Option<usize>, tasks: &[(String, usize)]) -> String {
        let mut out = String::new();
        let leader = u8::from(self.is_leader.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP pgcd_is_leader 1 when this agent is the leader."
        );
        let _ = writeln!(out, "# TYPE pgcd_is_leader gauge\npgcd_is_leader {leader}");
        if let Some(up) = hosts_up {
            let _ = writeln!(out, "# HELP pgcd_hosts_up Hosts whose lease is alive.");
            let _ = writeln!(out, "# TYPE pgcd_hosts_up gauge\npgcd_hosts_up {up}");
        }
        let _ = writeln!(
            out,
            "# HELP pgcd_leader_changes_total Leader changes seen by this agent."
        );
        let _ = writeln!(
            out,
            "# TYPE pgcd_leader_changes_total counter\npgcd_leader_changes_total {}",
            self.leader_changes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP pgcd_guarded_write_rejections_total Leader writes rejected because leadership was lost."
        );
        let _ = writeln!(
            out,
            "# TYPE pgcd_guarded_write_rejections_total counter\npgcd_guarded_write_rejections_total {}",
            self.not_leader_rejections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP pgcd_etcd_request_duration_seconds Latency of etcd requests."
        );
        self.etcd_latency
            .render("pgcd_etcd_request_duration_seconds", &mut out);
        let _ = writeln!(out, "# HELP pgcd_tasks Tasks by state.");
        let _ = writeln!(out, "# TYPE pgcd_tasks gauge");
        for (state, n) in tasks {
            let _ = writeln!(out, "pgcd_tasks{{state=\"{state}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.etcd_latency.observe(Duration::from_millis(3));
        let text = m.render(Some(2), &[("running".into(), 1)]);
        assert!(text.contains("pgcd_etcd_request_duration_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("pgcd_etcd_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("pgcd_etcd_request_duration_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(text.contains("pgcd_hosts_up 2"));
        assert!(text.contains("pgcd_tasks{state=\"running\"} 1"));
    }
}
