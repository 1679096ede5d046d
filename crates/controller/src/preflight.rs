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
    let info = tokio::time::timeout(bounded, client.apiserver_version())
        .await
        .map_err(|_| "the API server did not answer /version within 30 s".to_string())?
        .map_err(|e| format!("cannot read the API server's version: {}", drover_nodeops::api_text(&e)))?;
    let mut served = BTreeSet::new();
    let versions: BTreeSet<&str> = floor::REQUIRED.iter().map(|(gv, _)| *gv).collect();
    for gv in versions {
        let list = if gv == "v1" {
            tokio::time::timeout(bounded, client.list_core_api_resources(gv)).await
        } else {
            tokio::time::timeout(bounded, client.list_api_group_resources(gv)).await
        };
        match list {
            Err(_) => return Err(format!("discovery of {gv} did not answer within 30 s")),
            Ok(Ok(l)) => served.extend(l.resources.into_iter().map(|r| (gv.to_string(), r.name))),
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => {}
            Ok(Err(e)) => {
                return Err(format!("discovery of {gv} failed: {}", drover_nodeops::api_text(&e)));
            }
        }
    }
    match floor::judge(&info.git_version, &info.major, &info.minor, &served) {
        Some(problem) => Err(problem),
        None => Ok(Server {
            git_version: info.git_version,
        }),
    }
}
