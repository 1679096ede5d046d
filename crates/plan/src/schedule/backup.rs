//! Backup: the backup Job runs and must succeed before the first etcd or
//! control-plane change.

use drover_api::{BackupState, Reason};

use super::Ctx;
use crate::action::Action;
use crate::gates::Hold;

pub(super) fn schedule(ctx: &Ctx, actions: &mut Vec<Action>) -> Option<Hold> {
    match ctx.backup {
        BackupState::Failed(message) => Some(Hold {
            reason: Reason::BackupFailed,
            message: format!(
                "the backup Job failed: {message}; no etcd or control-plane node starts until it succeeds (fix it, then delete the failed Job, or change spec.backup or the target, to run it again)"
            ),
            stalled: true,
        }),
        _ => {
            actions.push(Action::RunBackup {
                backup_hash: ctx.backup_hash.to_string(),
            });
            Some(Hold {
                reason: Reason::BackingUp,
                message: "waiting for the backup Job before the first etcd or control-plane change".into(),
                stalled: false,
            })
        }
    }
}
