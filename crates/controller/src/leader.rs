//! Leader election through a `coordination.k8s.io` Lease: one replica acts,
//! the others wait. The leader acts only until a deadline it keeps on a
//! monotonic clock: the start of its last successful renewal + the lease
//! duration − a margin. It stops there whether or not a renewal returned
//! (each renewal has its own deadline, and its own client with no rate
//! limit), so it stops before a standby can take the Lease over. Every
//! write and step checks the [`Fence`]; see docs/design.md for the window
//! that remains.

use std::sync::Arc;
use std::time::Duration;

use drover_plan::Writer;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a lease holds without renewal; a standby takes over after it.
    pub duration: Duration,
    /// How often the holder renews (well under `duration`).
    pub renew_every: Duration,
    /// The longest one renewal (its read and its write) may take before it
    /// counts as failed.
    pub renew_deadline: Duration,
    /// How long before its Lease can expire the leader stops acting.
    pub margin: Duration,
}

impl LeaseConfig {
    /// The defaults for a lease duration: renewed every third of it, each
    /// renewal given a third of it, and the leader stops a fifth of it
    /// before the Lease can expire (15 s: every 5 s, 5 s, 3 s).
    pub fn new(namespace: &str, name: &str, identity: &str, duration: Duration) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration,
            renew_every: duration / 3,
            renew_deadline: duration / 3,
            margin: duration / 5,
        }
    }

    /// How long a leader acts after a renewal that started at t: until
    /// t + duration − margin.
    pub fn acting_for(&self) -> Duration {
        self.duration.saturating_sub(self.margin)
    }

    /// Why these durations cannot fence, if they cannot: a renewal must be
    /// able to end, successfully, before the leader's deadline.
    pub fn check(&self) -> Result<(), String> {
        if self.margin.is_zero() || self.renew_deadline.is_zero() {
            return Err("--lease-margin and --lease-renew-deadline must be more than 0".into());
        }
        if self.renew_deadline + self.margin >= self.duration {
            return Err(format!(
                "--lease-renew-deadline ({:?}) plus --lease-margin ({:?}) must be less than --lease-duration ({:?}): a renewal must be able to succeed before the leader's deadline",
                self.renew_deadline, self.margin, self.duration
            ));
        }
        Ok(())
    }
}

/// This replica leads in `term` (the Lease's `leaseTransitions` when it
/// acquired it) until `until`, unless a renewal moves that on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lead {
    pub term: i64,
    pub until: Instant,
}

/// What one attempt at the Lease came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// This replica holds the Lease, in this term.
    Leading { term: i64 },
    /// Another replica holds it; it can expire at this time.
    Held { expires: Timestamp },
    /// Another replica won the race for it.
    Lost,
}

impl Acquired {
    pub fn leads(&self) -> bool {
        matches!(self, Acquired::Leading { .. })
    }
}

/// When another replica's hold on the lease can expire, if another holds it.
fn held_by_other(lease: &Lease, me: &str, now: Timestamp) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    if holder == me {
        return None;
    }
    let duration = spec.lease_duration_seconds.unwrap_or(15) as i64;
    let renewed = spec.renew_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
    let expires = renewed + jiff::SignedDuration::from_secs(duration);
    (expires > now).then_some(expires)
}

/// Acquire or renew once.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Acquired, kube::Error> {
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
                Ok(_) => Ok(Acquired::Leading { term: 0 }),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Acquired::Lost),
                Err(e) => Err(e),
            }
        }
        Some(lease) => {
            if let Some(expires) = held_by_other(&lease, &cfg.identity, now) {
                return Ok(Acquired::Held { expires });
            }
            // Replace with the resourceVersion we read: of two contenders, one wins.
            let spec = spec(lease.spec.as_ref());
            let term = spec.lease_transitions.unwrap_or(0) as i64;
            let next = Lease {
                metadata: lease.metadata.clone(),
                spec: Some(spec),
            };
            match api.replace(&cfg.name, &PostParams::default(), &next).await {
                Ok(_) => Ok(Acquired::Leading { term }),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Acquired::Lost),
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

/// Await `f`; if this replica leads and its deadline passes meanwhile,
/// stop leading at that instant, whether or not `f` has returned.
async fn until_deadline<T>(
    f: impl Future<Output = T>,
    lead: &mut Option<Lead>,
    leading: &watch::Sender<Option<Lead>>,
    cfg: &LeaseConfig,
) -> T {
    tokio::pin!(f);
    loop {
        let Some(l) = *lead else { return f.await };
        tokio::select! {
            biased;
            out = &mut f => return out,
            _ = tokio::time::sleep_until(l.until) => {
                tracing::error!(
                    term = l.term,
                    margin = ?cfg.margin,
                    "the leader Lease was not renewed in time: stopped leading at the deadline, before the Lease can expire"
                );
                *lead = None;
                leading.send_replace(None);
            }
        }
    }
}

/// Keep trying to lead; publish whether this replica leads, and until
/// when. A renewal that started at t and succeeded lets it lead until
/// t + duration − margin; a renewal that fails, hangs or is refused does
/// not move that on, and leadership ends there.
pub async fn run(api: Api<Lease>, cfg: LeaseConfig, leading: watch::Sender<Option<Lead>>) {
    let mut lead: Option<Lead> = None;
    loop {
        let started = Instant::now();
        let attempt = tokio::time::timeout(cfg.renew_deadline, try_acquire(&api, &cfg));
        let result = until_deadline(attempt, &mut lead, &leading, &cfg).await;
        let mut next = started + cfg.renew_every;
        match result {
            Ok(Ok(Acquired::Leading { term })) => {
                let until = started + cfg.acting_for();
                if lead.is_none_or(|l| l.term != term) {
                    tracing::info!(term, "acquired the leader Lease");
                }
                // A renewal that returned after its own deadline does not count.
                if Instant::now() < until {
                    lead = Some(Lead { term, until });
                    leading.send_replace(lead);
                }
            }
            Ok(Ok(other)) => {
                if lead.take().is_some() {
                    tracing::error!("another replica holds the leader Lease: stopped leading");
                    leading.send_replace(None);
                }
                // Look again as soon as the other's hold can expire.
                if let Acquired::Held { expires } = other {
                    let left = Timestamp::now().duration_until(expires);
                    let left = Duration::try_from(left).unwrap_or_default();
                    next = next.min(Instant::now() + left + Duration::from_millis(50));
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the leader Lease failed"),
            Err(_) => tracing::warn!(
                deadline = ?cfg.renew_deadline,
                "renewing the leader Lease took longer than its deadline; giving this attempt up"
            ),
        }
        until_deadline(tokio::time::sleep_until(next), &mut lead, &leading, &cfg).await;
    }
}

/// What this replica may still do as leader. Every progress write and
/// status write, and every node step, runs under [`Fence::guard`]: it does
/// not start once leadership has ended, and is cancelled the moment it does.
#[derive(Clone, Default)]
pub struct Fence {
    /// None: no leader election, a single replica that always acts.
    inner: Option<Arc<Inner>>,
}

struct Inner {
    writer: Writer,
    leads: watch::Receiver<Option<Lead>>,
    /// Why the planner found this replica superseded, once it did.
    deposed: watch::Sender<Option<String>>,
}

impl Fence {
    /// The fence of `writer`, leading as `leads` says.
    pub fn new(writer: Writer, leads: watch::Receiver<Option<Lead>>) -> Fence {
        Fence {
            inner: Some(Arc::new(Inner {
                writer,
                leads,
                deposed: watch::Sender::new(None),
            })),
        }
    }

    /// Who writes, for the planner (None without leader election).
    pub fn writer(&self) -> Option<Writer> {
        self.inner.as_ref().map(|i| i.writer.clone())
    }

    /// Whether this replica may act now: it leads, in its own term, and its
    /// deadline has not passed.
    pub fn leading(&self) -> bool {
        let Some(i) = &self.inner else { return true };
        i.deposed.borrow().is_none()
            && (*i.leads.borrow()).is_some_and(|l| l.term == i.writer.term && Instant::now() < l.until)
    }

    /// Stop leading: another replica has led since this one's term began.
    pub fn depose(&self, why: String) {
        if let Some(i) = &self.inner {
            i.deposed.send_if_modified(|d| {
                let first = d.is_none();
                if first {
                    *d = Some(why);
                }
                first
            });
        }
    }

    /// Resolves, with the reason, when this replica stops leading: its
    /// deadline passed without a renewal, another replica holds the Lease,
    /// or the planner found a record of a later term. Never without leader
    /// election.
    pub async fn lost(&self) -> String {
        let Some(i) = &self.inner else {
            return std::future::pending().await;
        };
        let (mut leads, mut deposed) = (i.leads.clone(), i.deposed.subscribe());
        loop {
            if let Some(why) = deposed.borrow_and_update().clone() {
                return why;
            }
            let lead = *leads.borrow_and_update();
            let Some(l) = lead.filter(|l| l.term == i.writer.term) else {
                return "the leader Lease was not renewed in time, or another replica holds it".into();
            };
            if Instant::now() >= l.until {
                return "the leader Lease was not renewed in time: its deadline passed".into();
            }
            tokio::select! {
                _ = tokio::time::sleep_until(l.until) => {}
                changed = leads.changed() => if changed.is_err() {
                    return "leader election stopped".into();
                },
                _ = deposed.changed() => {}
            }
        }
    }

    /// Run `f` only while this replica leads: None if it does not lead now,
    /// or stops leading before `f` ends (then `f` is dropped at that moment).
    pub async fn guard<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        if !self.leading() {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.lost() => None,
            out = f => Some(out),
        }
    }
}

#[cfg(test)]
#[path = "tests/leader.rs"]
mod tests;
