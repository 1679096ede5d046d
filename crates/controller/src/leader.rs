//! Leader election through a `coordination.k8s.io` Lease: one replica acts,
//! the others wait; a replica that loses the lease stops acting at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a lease holds without renewal; a standby takes over after it.
    pub duration: Duration,
    /// How often the holder renews (well under `duration`).
    pub renew_every: Duration,
}

/// What a lease says about who leads.
fn held_by_other(lease: &Lease, me: &str, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return false };
    let Some(holder) = spec.holder_identity.as_deref().filter(|h| !h.is_empty()) else {
        return false;
    };
    if holder == me {
        return false;
    }
    let duration = spec.lease_duration_seconds.unwrap_or(15) as i64;
    let renewed = spec.renew_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
    renewed + jiff::SignedDuration::from_secs(duration) > now
}

/// Acquire or renew once. Returns whether this replica now leads.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let spec = |previous: Option<&LeaseSpec>| {
        let ours = previous.and_then(|p| p.holder_identity.as_deref()) == Some(cfg.identity.as_str());
        LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(cfg.duration.as_secs() as i32),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                previous.and_then(|p| p.lease_transitions).unwrap_or(0)
                    + if ours || previous.is_none() { 0 } else { 1 },
            ),
            ..LeaseSpec::default()
        }
    };
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(lease) if held_by_other(&lease, &cfg.identity, now) => Ok(false),
        Some(lease) => {
            // Replace with the resourceVersion we read: of two contenders, one wins.
            let next = Lease {
                metadata: lease.metadata.clone(),
                spec: Some(spec(lease.spec.as_ref())),
            };
            match api.replace(&cfg.name, &PostParams::default(), &next).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Give the lease up (on graceful shutdown), so a standby takes over at once.
pub async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
    }
}

/// Keep trying to lead; publish whether we lead. Leadership is lost when a
/// renewal has not succeeded within the lease duration.
pub async fn run(api: Api<Lease>, cfg: LeaseConfig, leading: watch::Sender<bool>) {
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        match try_acquire(&api, &cfg).await {
            Ok(true) => {
                last_renewed = Some(tokio::time::Instant::now());
                leading.send_replace(true);
            }
            Ok(false) => {
                last_renewed = None;
                leading.send_replace(false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the leader lease failed");
                // Stop well before the lease can expire and a standby take over,
                // so two replicas never act at once.
                if last_renewed.is_none_or(|t| t.elapsed() >= cfg.duration * 2 / 3) {
                    leading.send_replace(false);
                }
            }
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

#[cfg(test)]
#[path = "tests/leader.rs"]
mod tests;
