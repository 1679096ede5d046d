//! Shared pieces of drover's benchmarks (`drain-bench`, `rollout-bench`,
//! `chaos-soak`): process usage from `/proc`, request counts per client from
//! kubesim's counters, medians, plain-text tables and a seeded random
//! source. See `docs/benchmarks.md`.

use std::collections::BTreeMap;

pub mod anchor;
pub mod faults;
pub mod real;

/// A small seeded random source (SplitMix64): the same seed, the same
/// faults in the same order.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// In [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// In [lo, hi).
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

use kubesim::RequestCounts;

/// The User-Agent of the benchmarks' own client, so that its requests are
/// not counted as drover's.
pub const BENCH_AGENT: &str = "drover-bench";
/// drover's User-Agent product (`drover/<version> (<identity>)`).
pub const DROVER_AGENT: &str = "drover";
/// kubectl's User-Agent product.
pub const KUBECTL_AGENT: &str = "kubectl";

/// CPU time and memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU seconds.
    pub cpu: f64,
    /// Resident memory now (MiB).
    pub rss_mib: f64,
    /// Peak resident memory so far (VmHWM, MiB).
    pub hwm_mib: f64,
}

/// The sum of two CPU-time fields of `/proc/<pid>/stat` (numbered from 1,
/// as in proc(5)), in seconds; 0 if the process is gone.
fn cpu_seconds(pid: &str, a: usize, b: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command (field 2) may hold spaces: fields are counted after its closing ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| f.get(field - 3).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    (ticks(a) + ticks(b)) / 100.0
}

/// CPU seconds of this process's children that have been waited for
/// (cutime and cstime, fields 16 and 17).
pub fn children_cpu() -> f64 {
    cpu_seconds("self", 16, 17)
}

/// Usage of `pid` (`"self"` for this process); zeros if it is gone.
pub fn usage(pid: &str) -> Usage {
    // utime and stime are fields 14 and 15 of the file.
    let cpu = cpu_seconds(pid, 14, 15);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    Usage {
        cpu,
        rss_mib: kib("VmRSS:"),
        hwm_mib: kib("VmHWM:"),
    }
}

/// The machine, for the figures' context: CPU model, cores, memory, load.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
        / 1024.0;
    format!(
        "{model}, {cores} cores, {mem_gib:.0} GiB; load average {}",
        load_average()
    )
}

/// The 1-minute load average (other engineers share the machine).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The median (the mean of the middle two for an even count); 0 if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A kube-rs client for `url` that identifies itself as [`BENCH_AGENT`].
pub fn bench_client(url: &str) -> anyhow::Result<kube::Client> {
    let mut cfg = kube::Config::new(url.parse()?);
    cfg.headers
        .push((http::header::USER_AGENT, http::HeaderValue::from_static(BENCH_AGENT)));
    Ok(kube::Client::try_from(cfg)?)
}

/// What one client asked of the API server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentRequests {
    pub total: u64,
    /// Evictions the server accepted (201).
    pub evictions: u64,
    /// Evictions refused with 429 (a disruption budget said no).
    pub evictions_429: u64,
    /// Every answer with status 429.
    pub all_429: u64,
    /// Requests by `verb resource`.
    pub by_kind: BTreeMap<String, u64>,
}

impl AgentRequests {
    /// The most frequent kinds, `verb resource: n`, for a short breakdown.
    pub fn top(&self, n: usize) -> String {
        let mut v: Vec<(&String, &u64)> = self.by_kind.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter()
            .take(n)
            .map(|(k, c)| format!("{k} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The requests of `agent` counted so far.
pub fn agent_requests(counts: &RequestCounts, agent: &str) -> AgentRequests {
    let mut out = AgentRequests::default();
    for row in counts.rows().into_iter().filter(|r| r.key.agent == agent) {
        let k = &row.key;
        out.total += row.count;
        if k.resource == "pods/eviction" && k.verb == "create" {
            match k.code {
                200 | 201 => out.evictions += row.count,
                429 => out.evictions_429 += row.count,
                _ => {}
            }
        }
        if k.code == 429 {
            out.all_429 += row.count;
        }
        *out.by_kind.entry(format!("{} {}", k.verb, k.resource)).or_insert(0) += row.count;
    }
    out
}

/// A plain-text table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = vec![line(header.to_vec())];
    out.push(format!(
        "|{}|",
        widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|")
    ));
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubesim::RequestKey;

    #[test]
    fn medians_tables_and_agent_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "| a   | bb |\n|-----|----|\n| xyz | 1  |");
        let c = RequestCounts::default();
        let key = |agent: &str, verb: &str, resource: &str, code| RequestKey {
            agent: agent.into(),
            verb: verb.into(),
            resource: resource.into(),
            code,
        };
        c.record(key("kubectl", "create", "pods/eviction", 201));
        c.record(key("kubectl", "create", "pods/eviction", 429));
        c.record(key("kubectl", "get", "pods", 200));
        c.record(key("drover", "list", "pods", 200));
        let k = agent_requests(&c, KUBECTL_AGENT);
        assert_eq!((k.total, k.evictions, k.evictions_429, k.all_429), (3, 1, 1, 1));
        assert_eq!(k.top(1), "create pods/eviction 2");
        assert_eq!(agent_requests(&c, DROVER_AGENT).total, 1);
        assert!(usage("self").rss_mib > 0.0);
    }

    /// The benchmarks count drover's requests by its User-Agent: a request
    /// from drover's own clients is counted under [`DROVER_AGENT`].
    #[tokio::test]
    async fn drovers_clients_are_counted_as_drover() {
        let server = kubesim::ApiServer::start().await.unwrap();
        let config = kube::Config::new(server.url().parse().unwrap());
        let (client, evict) = drover_controller::clients(config, None).unwrap();
        for c in [client, evict] {
            kube::Api::<k8s_openapi::api::core::v1::Node>::all(c)
                .list(&Default::default())
                .await
                .unwrap();
        }
        let counted = agent_requests(server.requests(), DROVER_AGENT);
        assert_eq!(
            counted.by_kind.get("list nodes"),
            Some(&2),
            "{:?}",
            server.requests().rows()
        );
    }
}
