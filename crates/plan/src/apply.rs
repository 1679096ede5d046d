//! An action applied to an observation as if it had been carried out with
//! a given outcome: what the cluster would show on the next pass. The
//! forecast (`drover plan`) applies every action as Done; the tests apply
//! the outcomes they choose.

use drover_api::names::backup_job_name;
use drover_api::{BackupState, Outcome};

use crate::action::{Action, Step};
use crate::observe::Observation;

impl Observation {
    /// Apply `action` as if it ended with `outcome`. A step's chained
    /// successor (`Transition::then`) is not followed: the result is what a
    /// controller stopped right after the first step leaves, which is a
    /// state the controller must also handle, and the next pass plans the
    /// rest.
    pub fn apply(&mut self, action: &Action, outcome: &Outcome) {
        let owner = self.name.clone();
        let done = matches!(outcome, Outcome::Done | Outcome::RebootRequired { .. });
        match action {
            Action::Start { node, progress } => {
                if let Some(n) = self.nodes.iter_mut().find(|n| &n.name == node) {
                    n.progress = Some((**progress).clone());
                }
            }
            Action::Step { node, step, transition } => {
                let Some(n) = self.nodes.iter_mut().find(|n| &n.name == node) else {
                    return;
                };
                if done {
                    match step {
                        Step::Cordon => {
                            if !n.unschedulable {
                                n.unschedulable = true;
                                n.cordoned_by = Some(owner);
                            }
                        }
                        Step::Drain | Step::Verify { .. } => {}
                        Step::Reboot { boot_id, .. } => {
                            n.boot_id = format!("{boot_id}+1");
                            n.ready = true;
                        }
                        Step::Health { .. } | Step::Hook { .. } => {}
                        Step::Upgrade { component, version, .. } => {
                            n.versions.insert(component.clone(), version.clone());
                        }
                        Step::Uncordon { undo_cordon, untaint } => {
                            if *undo_cordon {
                                n.unschedulable = false;
                                n.cordoned_by = None;
                                if *untaint && n.steered_by.as_deref() == Some(owner.as_str()) {
                                    n.steered_by = None;
                                }
                            }
                        }
                    }
                }
                n.progress = transition.record(outcome);
            }
            Action::Steer { node, mark } => {
                if let Some(n) = self.nodes.iter_mut().find(|n| &n.name == node) {
                    n.steered_by = mark.then(|| owner.clone());
                }
            }
            Action::UpgradeWorkload { component, version } => {
                let w = self.workloads.entry(component.clone()).or_default();
                w.version = Some(version.clone());
                w.rolled_out = done;
                if done {
                    w.failed = None;
                    w.updated = w.total;
                    w.lagging = None;
                }
            }
            Action::RunBackup { backup_hash } => {
                let job = backup_job_name(&self.name, backup_hash);
                let state = if done {
                    BackupState::Succeeded
                } else {
                    BackupState::Running
                };
                self.backups.insert(job, state);
            }
        }
    }
}
