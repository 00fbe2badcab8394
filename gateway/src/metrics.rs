//! Counters for operators, rendered in the Prometheus text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the push latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The gateway's counters; one instance shared by every connection.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Streams publishing now.
    pub streams_active: AtomicU64,
    /// Publishes accepted since start.
    pub streams_total: AtomicU64,
    /// Publishes refused (bad key, second publisher, edge unreachable).
    pub publishes_refused: AtomicU64,
    /// RTMP bytes read from clients.
    pub bytes_in: AtomicU64,
    /// Segments (init and media) the edge took.
    pub segments_pushed: AtomicU64,
    /// Playlists the edge took.
    pub playlists_pushed: AtomicU64,
    /// Segments dropped because the edge was too slow (the queue was full).
    pub segments_dropped: AtomicU64,
    /// Parts (low-latency partial segments) the edge took.
    pub parts_pushed: AtomicU64,
    /// Segments committed from their parts at the edge (their bytes not sent again).
    pub segments_committed: AtomicU64,
    /// Chunks of parts the edge took (parts sent as they are made, `--chunk-ms`).
    pub chunks_pushed: AtomicU64,
    /// Parts not pushed: dropped for a slow edge, failed, or skipped after an earlier part of
    /// their segment was.
    pub parts_dropped: AtomicU64,
    /// Failed push attempts (each retry counts).
    pub push_errors: AtomicU64,
    /// Streams ended by an error (bad media, the edge refusing).
    pub stream_errors: AtomicU64,
    /// Streams whose connection was lost, parked for their publisher to reconnect.
    pub streams_parked: AtomicU64,
    /// Publishes that resumed a parked stream (a reconnect within the grace window).
    pub reconnects: AtomicU64,
    /// Publishes that took a key over from a silent connection.
    pub takeovers: AtomicU64,
    /// Connections refused because their address held the most allowed.
    pub connections_refused: AtomicU64,
    /// Times the SRT listener stopped and was bound again.
    pub srt_listener_restarts: AtomicU64,
    /// SRT data packets the receiver found missing (lost on the way; most are recovered).
    pub srt_packets_lost: AtomicU64,
    /// SRT data packets received again after a loss report.
    pub srt_packets_retransmitted: AtomicU64,
    /// SRT data packets given up on: not recovered within the latency (media lost).
    pub srt_packets_dropped: AtomicU64,
    /// SRT data packets that did not decrypt.
    pub srt_packets_undecrypted: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Records the time one successful push took.
    pub fn observe_push(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "gateway_streams_active",
            "gauge",
            "Streams publishing now.",
            get(&self.streams_active),
        );
        metric(
            "gateway_streams_total",
            "counter",
            "Publishes accepted.",
            get(&self.streams_total),
        );
        metric(
            "gateway_publishes_refused_total",
            "counter",
            "Publishes refused.",
            get(&self.publishes_refused),
        );
        metric(
            "gateway_bytes_in_total",
            "counter",
            "RTMP bytes received.",
            get(&self.bytes_in),
        );
        metric(
            "gateway_segments_pushed_total",
            "counter",
            "Segments the edge took.",
            get(&self.segments_pushed),
        );
        metric(
            "gateway_playlists_pushed_total",
            "counter",
            "Playlists the edge took.",
            get(&self.playlists_pushed),
        );
        metric(
            "gateway_segments_dropped_total",
            "counter",
            "Segments dropped for a slow edge.",
            get(&self.segments_dropped),
        );
        metric(
            "gateway_parts_pushed_total",
            "counter",
            "Parts (low-latency partial segments) the edge took.",
            get(&self.parts_pushed),
        );
        metric(
            "gateway_chunks_pushed_total",
            "counter",
            "Chunks of parts the edge took (parts sent as they are made).",
            get(&self.chunks_pushed),
        );
        metric(
            "gateway_segments_committed_total",
            "counter",
            "Segments the edge made of their parts (sent once, as parts).",
            get(&self.segments_committed),
        );
        metric(
            "gateway_parts_dropped_total",
            "counter",
            "Parts not pushed: a slow edge, a failure, or an earlier part of the segment not pushed.",
            get(&self.parts_dropped),
        );
        metric(
            "gateway_push_errors_total",
            "counter",
            "Failed push attempts.",
            get(&self.push_errors),
        );
        metric(
            "gateway_stream_errors_total",
            "counter",
            "Streams ended by an error.",
            get(&self.stream_errors),
        );
        metric(
            "gateway_streams_parked",
            "gauge",
            "Streams waiting for their publisher to reconnect.",
            get(&self.streams_parked),
        );
        metric(
            "gateway_reconnects_total",
            "counter",
            "Publishes that resumed a parked stream.",
            get(&self.reconnects),
        );
        metric(
            "gateway_takeovers_total",
            "counter",
            "Publishes that took a key over from a silent connection.",
            get(&self.takeovers),
        );
        metric(
            "gateway_connections_refused_total",
            "counter",
            "Connections refused: their address held the most allowed.",
            get(&self.connections_refused),
        );
        metric(
            "gateway_srt_listener_restarts_total",
            "counter",
            "Times the SRT listener stopped and was bound again.",
            get(&self.srt_listener_restarts),
        );
        metric(
            "gateway_srt_packets_lost_total",
            "counter",
            "SRT data packets found missing at the receiver (most are recovered).",
            get(&self.srt_packets_lost),
        );
        metric(
            "gateway_srt_packets_retransmitted_total",
            "counter",
            "SRT data packets received again after a loss report.",
            get(&self.srt_packets_retransmitted),
        );
        metric(
            "gateway_srt_packets_dropped_total",
            "counter",
            "SRT data packets not recovered within the latency.",
            get(&self.srt_packets_dropped),
        );
        metric(
            "gateway_srt_packets_undecrypted_total",
            "counter",
            "SRT data packets that did not decrypt.",
            get(&self.srt_packets_undecrypted),
        );
        let name = "gateway_push_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to push one file to the edge.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let count = get(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            get(&self.latency_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.bytes_in.fetch_add(42, Ordering::Relaxed);
        m.reconnects.fetch_add(1, Ordering::Relaxed);
        m.observe_push(Duration::from_millis(80));
        m.observe_push(Duration::from_secs(3));
        let text = m.render();
        assert!(text.contains("gateway_bytes_in_total 42\n"), "{text}");
        assert!(text.contains("gateway_reconnects_total 1\n"), "{text}");
        assert!(text.contains("gateway_streams_parked 0\n"), "{text}");
        assert!(
            text.contains("gateway_push_latency_seconds_bucket{le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_push_latency_seconds_bucket{le=\"5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_push_latency_seconds_count 2\n"),
            "{text}"
        );
    }
}
