//! Start-up check: is this a Kubernetes drover can serve? It asks the
//! server's `/version` and discovery, and `drover_api::floor` judges.

use std::collections::BTreeSet;
use std::time::Duration;

use drover_api::floor;
use kube::Client;

/// What the server said about itself, for the log line.
#[derive(Debug, Clone)]
pub struct Server {
    pub git_version: String,
}

/// One readable error naming the version and every missing API, or the
/// server's version. Discovery of a missing group answers 404; any other
/// failure (unreachable, 401) is reported as it is.
pub async fn check(client: &Client) -> Result<Server, String> {
    let bounded = Duration::from_secs(30);
    // A server that restarts, or a proxy in between, may answer 5xx or 429
    // for a moment: a few bounded retries, as for discovery below. Other
    // answers (401, 403, 404) are final.
    let mut attempt = 0;
    let info = loop {
        attempt += 1;
        let failure = match tokio::time::timeout(bounded, client.apiserver_version()).await {
            Ok(Ok(info)) => break info,
            Ok(Err(kube::Error::Api(e))) if e.code < 500 && e.code != 429 => {
                return Err(format!(
                    "cannot read the API server's version: {} ({})",
                    e.message, e.code
                ));
            }
            Ok(Err(e)) => format!("cannot read the API server's version: {}", drover_nodeops::api_text(&e)),
            Err(_) => "the API server did not answer /version within 30 s".to_string(),
        };
        if attempt >= 5 {
            return Err(failure);
        }
        tracing::warn!(%failure, attempt, "retrying /version");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let mut served = BTreeSet::new();
    let mut failures = Vec::new();
    let versions: BTreeSet<&str> = floor::REQUIRED.iter().map(|(gv, _)| *gv).collect();
    for gv in versions {
        // A fresh server may answer 503 while it syncs: a few bounded retries.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let list = if gv == "v1" {
                tokio::time::timeout(bounded, client.list_core_api_resources(gv)).await
            } else {
                tokio::time::timeout(bounded, client.list_api_group_resources(gv)).await
            };
            let failure = match list {
                Ok(Ok(l)) => {
                    served.extend(l.resources.into_iter().map(|r| (gv.to_string(), r.name)));
                    break;
                }
                Ok(Err(kube::Error::Api(e))) if e.code == 404 => break,
                Ok(Err(kube::Error::Api(e))) if e.code == 401 || e.code == 403 => {
                    failures.push(format!(
                        "discovery of {gv} was refused ({}): drover's identity needs discovery, which the built-in system:discovery ClusterRole grants",
                        e.message
                    ));
                    break;
                }
                Err(_) => format!("discovery of {gv} did not answer within 30 s"),
                Ok(Err(e)) => format!("discovery of {gv} failed: {}", drover_nodeops::api_text(&e)),
            };
            if attempt >= 5 {
                failures.push(failure);
                break;
            }
            tracing::warn!(%failure, attempt, "retrying discovery");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "drover cannot check this cluster (Kubernetes {}): {}",
            info.git_version,
            failures.join("; ")
        ));
    }
    match floor::judge(&info.git_version, &info.major, &info.minor, &served) {
        Some(problem) => Err(problem),
        None => Ok(Server {
            git_version: info.git_version,
        }),
    }
}
