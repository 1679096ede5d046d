//! `drover status [NAME]`: a readable summary of ClusterUpgrades, also
//! usable as `kubectl drover status` through a `kubectl-drover` link.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;
use drover_api::ClusterUpgrade;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use crate::ui::{ago, explain, parse_flag_duration, table};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The ClusterUpgrade to show (every one when omitted).
    pub name: Option<String>,
    /// Print again on each change, until --timeout passes or Ctrl-C.
    #[arg(long, short)]
    pub watch: bool,
    /// How long --watch runs.
    #[arg(long, default_value = "10m", value_parser = parse_flag_duration)]
    pub timeout: Duration,
    /// Print the object itself instead of the summary.
    #[arg(long, short, value_enum)]
    pub output: Option<Format>,
    /// A kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The summary of one ClusterUpgrade, as of `now`.
pub fn render(cu: &ClusterUpgrade, now: Timestamp) -> String {
    let mut out = String::new();
    let name = cu.name_any();
    let generation = cu.metadata.generation.unwrap_or(0);
    out.push_str(&format!("ClusterUpgrade {name}\n"));
    let Some(st) = &cu.status else {
        out.push_str(&format!(
            "  no status yet: drover has not reconciled generation {generation} (is `drover run` running against this cluster?)\n"
        ));
        return out;
    };
    let observed = st.observed_generation.unwrap_or(0);
    let field = |k: &str, v: String| format!("  {k:<12}{v}\n");
    out.push_str(&field("Target:", st.target.clone().unwrap_or_default()));
    out.push_str(&field("Stage:", st.stage.clone().unwrap_or_default()));
    out.push_str(&field(
        "Progress:",
        format!("{} nodes updated", st.progress.clone().unwrap_or_default()),
    ));
    let stale = if observed == generation {
        String::new()
    } else {
        " (drover has not caught up with the latest spec yet)".into()
    };
    out.push_str(&field(
        "Generation:",
        format!("{generation}, status observed {observed}{stale}"),
    ));
    out.push_str(&field("Paused:", yes_no(cu.spec.paused).to_string()));
    if let Some(t) = &st.start_time {
        let done = match &st.completion_time {
            Some(c) => format!(", completed {} ({} ago)", c.0, ago(c.0, now)),
            None => String::new(),
        };
        out.push_str(&field(
            "Rollout:",
            format!("started {} ({} ago){done}", t.0, ago(t.0, now)),
        ));
    }

    out.push_str("\nConditions:\n");
    let rows: Vec<Vec<String>> = st
        .conditions
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                ago(c.last_transition_time.0, now),
                c.message.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], &rows));

    let c = &st.counts;
    let skipped = if c.skipped > 0 {
        format!(" ({} skipped)", c.skipped)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "\nNodes: {} in scope, {} updated, {} updating, {} failed{skipped}, {} pending, {} unavailable\n",
        c.in_scope, c.updated, c.updating, c.failed, c.pending, c.unavailable
    ));

    out.push_str("\nComponents:\n");
    let rows: Vec<Vec<String>> = st
        .components
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.stage.clone(),
                c.desired.clone(),
                format!("{}/{}", c.updated, c.total),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("  (none reported)\n");
    } else {
        out.push_str(&table(&["NAME", "STAGE", "DESIRED", "UPDATED"], &rows));
    }

    out.push_str("\nNodes in progress, blocked or failed:\n");
    let rows: Vec<Vec<String>> = st
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.state.to_string(),
                n.step.clone(),
                n.component.clone().unwrap_or_else(|| "-".into()),
                n.attempts.to_string(),
                ago(n.since.0, now),
                match &n.next_retry {
                    Some(t) if n.retries > 0 => format!("[retry {} at {}] {}", n.retries + 1, t.0, n.message),
                    _ => n.message.clone(),
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&table(
            &["NODE", "STATE", "STEP", "COMPONENT", "ATTEMPTS", "SINCE", "MESSAGE"],
            &rows,
        ));
    }
    if st.nodes_omitted > 0 {
        out.push_str(&format!("  … and {} more not listed\n", st.nodes_omitted));
    }

    if let Some(c) = &st.canary {
        let approval = match (&cu.spec.strategy.canary, &cu.spec.approved_canary) {
            (Some(k), Some(a)) if k.require_approval && *a == c.hash => " (approved)".to_string(),
            (Some(k), _) if k.require_approval => format!(
                " (to approve: drover approve {} — sets spec.approvedCanary: {})",
                cu.name_any(),
                c.hash
            ),
            _ => String::new(),
        };
        out.push_str(&format!("\nCanary: {} on {}{approval}\n", c.state, c.nodes.join(", ")));
        out.push_str(&format!("  hash: {}\n", c.hash));
        if let Some(t) = &c.soak_until {
            out.push_str(&format!("  soak until: {}\n", t.0));
        }
        for o in &c.observed {
            out.push_str(&format!("  observed: {o}\n"));
        }
    }

    if !st.rolled_back.is_empty() {
        out.push_str("\nRolled back:\n");
        let rows: Vec<Vec<String>> = st
            .rolled_back
            .iter()
            .map(|r| vec![r.name.clone(), r.versions.clone(), r.reason.clone()])
            .collect();
        out.push_str(&table(&["NODE", "VERSIONS", "WHY"], &rows));
    }

    if !st.left_cordoned.is_empty() {
        out.push_str("\nLeft cordoned on purpose:\n");
        let rows: Vec<Vec<String>> = st
            .left_cordoned
            .iter()
            .map(|l| vec![l.name.clone(), l.reason.clone()])
            .collect();
        out.push_str(&table(&["NODE", "WHY"], &rows));
    }

    if let Some(b) = &st.backup {
        out.push_str(&format!("\nBackup: Job {} {}", b.job, b.state));
        if !b.message.is_empty() {
            out.push_str(&format!(": {}", b.message));
        }
        out.push('\n');
    }

    out.push_str("\nHistory:\n");
    let rows: Vec<Vec<String>> = st
        .history
        .iter()
        .map(|h| {
            vec![
                h.result.clone(),
                h.generation.to_string(),
                h.start_time.0.to_string(),
                h.completion_time
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_else(|| "-".into()),
                h.target.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&table(
            &["RESULT", "GENERATION", "STARTED", "COMPLETED", "TARGET"],
            &rows,
        ));
    }
    out
}

async fn fetch(api: &Api<ClusterUpgrade>, name: Option<&str>) -> anyhow::Result<Vec<ClusterUpgrade>> {
    match name {
        Some(n) => match api.get_opt(n).await {
            Ok(Some(cu)) => Ok(vec![cu]),
            Ok(None) => anyhow::bail!("ClusterUpgrade {n:?} not found (`kubectl get cu` lists the ClusterUpgrades)"),
            Err(e) => Err(explain(e, &format!("reading ClusterUpgrade {n:?}"))),
        },
        None => {
            let mut items = api
                .list(&ListParams::default())
                .await
                .map_err(|e| explain(e, "listing ClusterUpgrades"))?
                .items;
            items.sort_by_key(|c| c.name_any());
            Ok(items)
        }
    }
}

fn print(items: &[ClusterUpgrade], name: Option<&str>, format: Option<Format>) -> anyhow::Result<String> {
    let value = match name {
        Some(_) => serde_json::to_value(&items[0])?,
        None => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
    };
    Ok(match format {
        Some(Format::Json) => serde_json::to_string_pretty(&value)? + "\n",
        Some(Format::Yaml) => serde_yaml::to_string(&value)?,
        None if items.is_empty() => "No ClusterUpgrades found.\n".to_string(),
        None => {
            let now = Timestamp::now();
            items.iter().map(|cu| render(cu, now)).collect::<Vec<_>>().join("\n")
        }
    })
}

/// What a change is: the spec's generation and the status (not the time).
fn fingerprint(items: &[ClusterUpgrade]) -> String {
    let v: Vec<_> = items
        .iter()
        .map(|c| (c.name_any(), c.metadata.generation, &c.status))
        .collect();
    serde_json::to_string(&v).unwrap_or_default()
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let client = crate::ui::client(args.kubeconfig.clone()).await?;
    let api: Api<ClusterUpgrade> = Api::all(client);
    let name = args.name.as_deref();
    let items = fetch(&api, name).await?;
    print!("{}", print(&items, name, args.output)?);
    if !args.watch {
        return Ok(());
    }
    let mut last = fingerprint(&items);
    let deadline = tokio::time::Instant::now() + args.timeout;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                eprintln!("drover status: stopped watching after --timeout {}", crate::ui::short(args.timeout));
                return Ok(());
            }
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let items = fetch(&api, name)
            .await
            .context("while watching (the object may have been deleted)")?;
        let now = fingerprint(&items);
        if now != last {
            last = now;
            if args.output.is_none() {
                println!("--- {}", Timestamp::now());
            }
            print!("{}", print(&items, name, args.output)?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::{ClusterUpgradeStatus, ComponentStatus, NodeCounts, NodeDetail, RolloutRecord};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn canary_upgrade(require_approval: bool, observed: Option<i64>) -> ClusterUpgrade {
        let spec = serde_json::from_value(serde_json::json!({
            "components": [],
            "strategy": {"canary": {"nodes": 1, "requireApproval": require_approval}}
        }))
        .unwrap();
        let mut cu = ClusterUpgrade::new("platform", spec);
        cu.metadata.generation = Some(3);
        cu.status = Some(ClusterUpgradeStatus {
            observed_generation: observed,
            canary: Some(drover_api::CanaryStatus {
                hash: "0123456789ab".into(),
                nodes: vec!["worker-1".into()],
                state: "AwaitingApproval".into(),
                soak_until: None,
                observed: vec!["worker-1: upgraded and every health check passed".into()],
            }),
            ..Default::default()
        });
        cu
    }

    #[test]
    fn approve_takes_the_hash_of_the_current_status_and_refuses_what_it_cannot_approve() {
        assert_eq!(
            hash_to_approve(&canary_upgrade(true, Some(3)), None).unwrap(),
            "0123456789ab"
        );
        assert_eq!(
            hash_to_approve(&canary_upgrade(true, Some(3)), Some("0123456789ab")).unwrap(),
            "0123456789ab"
        );
        let e = hash_to_approve(&canary_upgrade(true, Some(3)), Some("ffffffffffff"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not the canary hash of ClusterUpgrade platform's current target (0123456789ab)"),
            "{e}"
        );
        let e = hash_to_approve(&canary_upgrade(true, Some(2)), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has not reported the canary of generation 3"), "{e}");
        let e = hash_to_approve(&canary_upgrade(false, Some(3)), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("requireApproval is false"), "{e}");
        let mut none = canary_upgrade(true, Some(3));
        none.spec.strategy.canary = None;
        let e = hash_to_approve(&none, None).unwrap_err().to_string();
        assert!(
            e.contains("has no spec.strategy.canary: there is nothing to approve"),
            "{e}"
        );
    }

    #[test]
    fn the_summary_shows_the_canary_its_hash_and_how_to_approve_it() {
        let text = render(&canary_upgrade(true, Some(3)), "2026-11-23T10:00:00Z".parse().unwrap());
        assert!(text.contains("Canary: AwaitingApproval on worker-1 (to approve: drover approve platform — sets spec.approvedCanary: 0123456789ab)"), "{text}");
        assert!(
            text.contains("observed: worker-1: upgraded and every health check passed"),
            "{text}"
        );
    }

    #[test]
    fn the_summary_has_conditions_counts_components_nodes_and_history() {
        let t: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let spec = serde_json::from_value(serde_json::json!({"components": []})).unwrap();
        let mut cu = ClusterUpgrade::new("platform", spec);
        cu.metadata.generation = Some(2);
        let cond = |t_: &str, s: &str, r: &str| Condition {
            type_: t_.into(),
            status: s.into(),
            reason: r.into(),
            message: format!("{r} message"),
            last_transition_time: Time(t),
            observed_generation: Some(2),
        };
        cu.status = Some(ClusterUpgradeStatus {
            observed_generation: Some(2),
            conditions: vec![
                cond("Ready", "False", "DrainBlocked"),
                cond("Reconciling", "True", "DrainBlocked"),
                cond("Stalled", "False", "DrainBlocked"),
            ],
            target: Some("containerd=1.7.23".into()),
            progress: Some("3/8".into()),
            stage: Some("Workers".into()),
            counts: NodeCounts {
                in_scope: 8,
                updated: 3,
                updating: 1,
                failed: 0,
                skipped: 0,
                pending: 4,
                unavailable: 1,
            },
            components: vec![ComponentStatus {
                name: "containerd".into(),
                stage: "Runtime".into(),
                desired: "1.7.23".into(),
                updated: 3,
                total: 8,
                message: None,
            }],
            nodes: vec![NodeDetail {
                name: "worker-1".into(),
                state: drover_api::NodeState::Blocked,
                step: "Drain".into(),
                component: None,
                message: "evicting shop/web-1 would violate PodDisruptionBudget shop/web".into(),
                since: Time(t),
                attempts: 3,
                retries: 0,
                next_retry: None,
            }],
            history: vec![RolloutRecord {
                target: "containerd=1.7.22".into(),
                generation: 1,
                start_time: Time(t),
                completion_time: Some(Time(t)),
                result: "Completed".into(),
            }],
            start_time: Some(Time(t)),
            ..Default::default()
        });
        let now: Timestamp = "2026-11-23T10:01:30Z".parse().unwrap();
        let out = render(&cu, now);
        for want in [
            "ClusterUpgrade platform",
            "Target:     containerd=1.7.23",
            "Stage:      Workers",
            "Progress:   3/8 nodes updated",
            "Conditions:",
            "Ready        False   DrainBlocked  90s    DrainBlocked message",
            "Nodes: 8 in scope, 3 updated, 1 updating, 0 failed, 4 pending, 1 unavailable",
            "containerd  Runtime  1.7.23   3/8",
            "worker-1  Blocked  Drain  -          3         90s    evicting shop/web-1",
            "History:",
            "Completed  1",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn a_retrying_node_shows_its_next_try_and_kept_nodes_say_why() {
        let t: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let spec = serde_json::from_value(serde_json::json!({"components": []})).unwrap();
        let mut cu = ClusterUpgrade::new("platform", spec);
        cu.status = Some(ClusterUpgradeStatus {
            counts: NodeCounts {
                in_scope: 3,
                failed: 1,
                skipped: 1,
                ..Default::default()
            },
            nodes: vec![NodeDetail {
                name: "worker-2".into(),
                state: drover_api::NodeState::Retrying,
                step: "Upgrade".into(),
                component: Some("containerd".into()),
                message: "try 1 failed (UpgradeJobFailed: exit 3)".into(),
                since: Time(t),
                attempts: 0,
                retries: 1,
                next_retry: Some(Time(t)),
            }],
            left_cordoned: vec![drover_api::LeftCordoned {
                name: "worker-3".into(),
                reason: "annotated drover.dev/keep-cordoned: disk errors".into(),
            }],
            ..Default::default()
        });
        let out = render(&cu, t);
        for want in [
            "1 failed (1 skipped)",
            "worker-2  Retrying  Upgrade",
            "[retry 2 at 2026-11-23T10:00:00Z] try 1 failed (UpgradeJobFailed: exit 3)",
            "Left cordoned on purpose:",
            "worker-3  annotated drover.dev/keep-cordoned: disk errors",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn an_object_without_status_says_so() {
        let spec = serde_json::from_value(serde_json::json!({"components": []})).unwrap();
        let cu = ClusterUpgrade::new("fresh", spec);
        assert!(render(&cu, Timestamp::now()).contains("no status yet"));
    }
}

/// `drover approve NAME`: set spec.approvedCanary to the canary hash the status shows.
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The ClusterUpgrade whose canary to approve.
    pub name: String,
    /// Approve this hash rather than the one status shows (what a pipeline recorded).
    #[arg(long)]
    pub hash: Option<String>,
    /// A kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

/// The hash to approve, or why there is none: the spec must have a canary
/// that needs approval, and the status must describe the spec as it is now.
pub fn hash_to_approve(cu: &ClusterUpgrade, wanted: Option<&str>) -> anyhow::Result<String> {
    let name = cu.name_any();
    let Some(canary) = &cu.spec.strategy.canary else {
        anyhow::bail!("ClusterUpgrade {name} has no spec.strategy.canary: there is nothing to approve");
    };
    if !canary.require_approval {
        anyhow::bail!(
            "ClusterUpgrade {name}'s canary does not wait for approval (spec.strategy.canary.requireApproval is false)"
        );
    }
    let st = cu.status.clone().unwrap_or_default();
    let generation = cu.metadata.generation.unwrap_or_default();
    let shown = st.canary.as_ref().map(|c| c.hash.clone());
    let Some(shown) = shown.filter(|_| st.observed_generation == Some(generation)) else {
        anyhow::bail!(
            "drover has not reported the canary of generation {generation} of ClusterUpgrade {name} yet (status.canary); try again once it has (drover status {name})"
        );
    };
    match wanted {
        Some(w) if w != shown => anyhow::bail!(
            "--hash {w} is not the canary hash of ClusterUpgrade {name}'s current target ({shown}): the target changed since that hash was taken"
        ),
        _ => Ok(shown),
    }
}

pub async fn approve(args: ApproveArgs) -> anyhow::Result<()> {
    let client = crate::ui::client(args.kubeconfig.clone()).await?;
    let api: Api<ClusterUpgrade> = Api::all(client);
    let cu = fetch(&api, Some(&args.name)).await?.remove(0);
    let hash = hash_to_approve(&cu, args.hash.as_deref())?;
    if cu.spec.approved_canary.as_deref() == Some(hash.as_str()) {
        println!("ClusterUpgrade {} canary {hash} is already approved", args.name);
        return Ok(());
    }
    // Only the object as read: if the spec changed since, the server refuses (409).
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": cu.metadata.resource_version},
        "spec": {"approvedCanary": hash},
    });
    api.patch(
        &args.name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => anyhow::anyhow!(
            "ClusterUpgrade {} changed while approving; run drover status {} and approve again",
            args.name,
            args.name
        ),
        e => explain(
            e,
            &format!("setting spec.approvedCanary of ClusterUpgrade {}", args.name),
        ),
    })?;
    println!(
        "approved canary {hash} of ClusterUpgrade {} (target {})",
        args.name,
        cu.status.and_then(|s| s.target).unwrap_or_default()
    );
    Ok(())
}
