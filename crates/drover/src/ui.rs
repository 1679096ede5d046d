//! Small text helpers shared by `drover status`, `drover plan` and `drover demo`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width = vec![0usize; cols];
    let all = std::iter::once(header.iter().map(|s| s.to_string()).collect::<Vec<_>>()).chain(rows.iter().cloned());
    let all: Vec<Vec<String>> = all.collect();
    for row in &all {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(cols) {
            if i + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(width[i] - cell.chars().count() + 2));
            }
        }
        out.push_str("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A short duration as kubectl shows ages: `45s`, `3m12s`, `2h5m`, `3d4h`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long ago `t` was.
pub fn ago(t: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(t.as_second()).max(0) as u64;
    short(Duration::from_secs(secs))
}

/// A Go-style duration flag (`90s`, `5m`, `1h30m`).
pub fn parse_flag_duration(s: &str) -> Result<Duration, String> {
    drover_api::validate::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 90s, 5m or 1h"))
}

/// The client for `--kubeconfig`, or the usual places ($KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = crate::kube_config(kubeconfig)
        .await
        .context("no cluster to talk to (pass --kubeconfig or set KUBECONFIG)")?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// A friendlier message for the errors users meet first.
pub fn explain(e: kube::Error, what: &str) -> anyhow::Error {
    match &e {
        kube::Error::Api(s) if s.code == 404 => anyhow::anyhow!(
            "{what}: the ClusterUpgrade API (clusterupgrades.drover.dev) is not installed on this cluster; install it with `drover crd | kubectl apply --server-side -f -`"
        ),
        _ => anyhow::Error::new(e).context(what.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_ages_read_like_kubectl() {
        let t = table(
            &["A", "BB"],
            &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]],
        );
        assert_eq!(t, "  A    BB\n  xyz  1\n  q    22\n");
        assert_eq!(short(Duration::from_secs(45)), "45s");
        assert_eq!(short(Duration::from_secs(192)), "3m12s");
        assert_eq!(short(Duration::from_secs(7500)), "2h5m");
        assert_eq!(short(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d4h");
        assert!(parse_flag_duration("5m").is_ok());
        assert!(parse_flag_duration("five").is_err());
    }
}
