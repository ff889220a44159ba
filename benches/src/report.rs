//! Results: one JSON line per run, with `null` where a field does not apply.

use std::fmt::Write as _;
use std::time::Duration;

use crate::wire::Report;
use crate::{Netem, Spec};

/// One result line.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Record {
    pub(crate) stack: &'static str,
    pub(crate) workload: &'static str,
    pub(crate) qos: String,
    pub(crate) size: usize,
    pub(crate) runs: u32,
    pub(crate) messages_sent: u64,
    pub(crate) messages_received: u64,
    pub(crate) in_order: Option<bool>,
    pub(crate) seconds: f64,
    pub(crate) msgs_per_s: Option<f64>,
    pub(crate) mb_per_s: Option<f64>,
    pub(crate) wire_bytes_per_msg: Option<f64>,
    pub(crate) rtt_p50_us: Option<f64>,
    pub(crate) rtt_p99_us: Option<f64>,
    pub(crate) rtt_max_us: Option<f64>,
    pub(crate) server_cpu_pct: Option<f64>,
    pub(crate) server_rss_kib: Option<u64>,
    pub(crate) alloc_per_msg: Option<f64>,
    pub(crate) clients: Option<u64>,
    pub(crate) echo_loss: Option<u64>,
    pub(crate) rss_per_conn_bytes: Option<f64>,
    /// The emulated link crossed, if any (`netem RATE Mbit/s RTT ms LOSS`).
    pub(crate) link: Option<String>,
    /// Blackout: how long after the link returned the first echo arrived.
    pub(crate) resume_ms: Option<f64>,
    /// Layers: the CPU time of both sides (both threads) per message, in nanoseconds.
    pub(crate) cpu_ns_per_msg: Option<f64>,
    /// Layers: `cpu_ns_per_msg` over the transport's for the same traffic in the same repeat
    /// (the upper layers' cost per message as a ratio; median of the pairs in a median line).
    pub(crate) vs_transport_cpu: Option<f64>,
    /// Layers: the time per message over the transport's (its `msgs_per_s` over this one's).
    pub(crate) vs_transport_time: Option<f64>,
    /// Layers: datagrams the sending side's socket sent during the run (the data).
    pub(crate) sender_datagrams: Option<u64>,
    /// Layers: datagrams the receiving side's socket sent during the run (acks).
    pub(crate) receiver_datagrams: Option<u64>,
    /// Clients: seconds from the first connection attempt to the last client connected.
    pub(crate) connect_s: Option<f64>,
    /// Clients: clients admitted per second over `connect_s`.
    pub(crate) connects_per_s: Option<f64>,
}

impl Record {
    pub(crate) fn new(spec: &Spec) -> Self {
        Self {
            stack: if spec.raw {
                "raw-udp"
            } else if spec.secure.is_some() {
                "sturnus-netcode"
            } else {
                "sturnus"
            },
            workload: spec.workload.name(),
            qos: if spec.raw { "datagram".to_owned() } else { spec.qos.name().to_owned() },
            size: spec.size,
            runs: 1,
            link: spec.netem.as_ref().map(Netem::describe),
            ..Self::default()
        }
    }

    /// Takes the server's counts and rates.
    pub(crate) fn fill_from_report(&mut self, report: &Report) {
        self.messages_received = report.received;
        self.in_order = Some(report.in_order);
        self.seconds = report.window.as_secs_f64();
        if self.seconds > 0.0 {
            self.msgs_per_s = Some(report.received as f64 / self.seconds);
            self.mb_per_s = Some(report.bytes_received as f64 / self.seconds / 1e6);
        }
        self.server_cpu_pct = cpu_pct(report.cpu, report.wall);
        self.server_rss_kib = Some(report.rss_kib).filter(|&k| k > 0);
    }

    /// The line, as JSON.
    pub(crate) fn to_json(&self) -> String {
        let mut s = String::from("{");
        let mut field = |name: &str, value: String| {
            if s.len() > 1 {
                s.push(',');
            }
            let _ = write!(s, "\"{name}\":{value}");
        };
        let num = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.3}"));
        let int = |v: Option<u64>| v.map_or("null".to_owned(), |v| v.to_string());
        field("stack", format!("\"{}\"", self.stack));
        field("workload", format!("\"{}\"", self.workload));
        field("qos", format!("\"{}\"", self.qos));
        field("size", self.size.to_string());
        field("runs", self.runs.to_string());
        field("messages_sent", self.messages_sent.to_string());
        field("messages_received", self.messages_received.to_string());
        field("in_order", self.in_order.map_or("null".to_owned(), |b| b.to_string()));
        field("seconds", format!("{:.6}", self.seconds));
        field("msgs_per_s", num(self.msgs_per_s));
        field("mb_per_s", num(self.mb_per_s));
        field("wire_bytes_per_msg", num(self.wire_bytes_per_msg));
        field("rtt_p50_us", num(self.rtt_p50_us));
        field("rtt_p99_us", num(self.rtt_p99_us));
        field("rtt_max_us", num(self.rtt_max_us));
        field("server_cpu_pct", num(self.server_cpu_pct));
        field("server_rss_kib", int(self.server_rss_kib));
        field("alloc_per_msg", num(self.alloc_per_msg));
        field("clients", int(self.clients));
        field("echo_loss", int(self.echo_loss));
        field("rss_per_conn_bytes", num(self.rss_per_conn_bytes));
        field("link", self.link.as_ref().map_or("null".to_owned(), |l| format!("\"{l}\"")));
        field("resume_ms", num(self.resume_ms));
        field("cpu_ns_per_msg", num(self.cpu_ns_per_msg));
        field("vs_transport_cpu", num(self.vs_transport_cpu));
        field("vs_transport_time", num(self.vs_transport_time));
        field("sender_datagrams", int(self.sender_datagrams));
        field("receiver_datagrams", int(self.receiver_datagrams));
        field("connect_s", num(self.connect_s));
        field("connects_per_s", num(self.connects_per_s));
        s.push('}');
        s
    }

    /// The median of each measured field over several runs of one workload.
    pub(crate) fn median(runs: &[Record]) -> Option<Record> {
        let first = runs.first()?;
        let f = |get: fn(&Record) -> Option<f64>| median(runs.iter().filter_map(get).collect());
        let u = |get: fn(&Record) -> u64| {
            let mut v: Vec<u64> = runs.iter().map(get).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        Some(Record {
            runs: u32::try_from(runs.len()).unwrap_or(u32::MAX),
            messages_sent: u(|r| r.messages_sent),
            messages_received: u(|r| r.messages_received),
            in_order: first.in_order.map(|_| runs.iter().all(|r| r.in_order == Some(true))),
            seconds: f(|r| Some(r.seconds)).unwrap_or(0.0),
            msgs_per_s: f(|r| r.msgs_per_s),
            mb_per_s: f(|r| r.mb_per_s),
            wire_bytes_per_msg: f(|r| r.wire_bytes_per_msg),
            rtt_p50_us: f(|r| r.rtt_p50_us),
            rtt_p99_us: f(|r| r.rtt_p99_us),
            rtt_max_us: f(|r| r.rtt_max_us),
            server_cpu_pct: f(|r| r.server_cpu_pct),
            server_rss_kib: f(|r| r.server_rss_kib.map(|k| k as f64)).map(|k| k as u64),
            alloc_per_msg: f(|r| r.alloc_per_msg),
            echo_loss: first.echo_loss.map(|_| u(|r| r.echo_loss.unwrap_or(0))),
            rss_per_conn_bytes: f(|r| r.rss_per_conn_bytes),
            resume_ms: f(|r| r.resume_ms),
            cpu_ns_per_msg: f(|r| r.cpu_ns_per_msg),
            vs_transport_cpu: f(|r| r.vs_transport_cpu),
            vs_transport_time: f(|r| r.vs_transport_time),
            sender_datagrams: f(|r| r.sender_datagrams.map(|d| d as f64)).map(|d| d as u64),
            receiver_datagrams: f(|r| r.receiver_datagrams.map(|d| d as f64)).map(|d| d as u64),
            connect_s: f(|r| r.connect_s),
            connects_per_s: f(|r| r.connects_per_s),
            ..first.clone()
        })
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Server CPU as a percentage of one core over `wall`.
pub(crate) fn cpu_pct(cpu: Duration, wall: Duration) -> Option<f64> {
    (wall > Duration::ZERO).then(|| cpu.as_secs_f64() / wall.as_secs_f64() * 100.0)
}

/// The `q`-quantile of sorted samples (nearest rank).
pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_field_and_nulls() {
        let r = Record {
            stack: "sturnus",
            workload: "latency",
            qos: "reliable".into(),
            ..Record::default()
        };
        let json = r.to_json();
        for name in [
            "workload",
            "qos",
            "messages_sent",
            "messages_received",
            "in_order",
            "seconds",
            "msgs_per_s",
            "mb_per_s",
            "wire_bytes_per_msg",
            "rtt_p50_us",
            "rtt_p99_us",
            "rtt_max_us",
            "server_cpu_pct",
            "server_rss_kib",
            "alloc_per_msg",
        ] {
            assert!(json.contains(&format!("\"{name}\":")), "{name} missing from {json}");
        }
        assert!(json.contains("\"msgs_per_s\":null"));
        assert!(json.starts_with('{') && json.ends_with('}'));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 0.5), Some(Duration::from_micros(50)));
        assert_eq!(percentile(&v, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn median_of_three_runs() {
        let run =
            |rate| Record { msgs_per_s: Some(rate), in_order: Some(true), ..Record::default() };
        let m = Record::median(&[run(3.0), run(1.0), run(2.0)]).unwrap();
        assert_eq!((m.msgs_per_s, m.runs, m.in_order), (Some(2.0), 3, Some(true)));
    }
}
