//! The Job controller: pods up to `parallelism` until `completions`
//! succeed, `backoffLimit` with exponential back-off between retries,
//! `activeDeadlineSeconds`, the `SuccessCriteriaMet`/`Complete` and
//! `FailureTarget`/`Failed` conditions of Kubernetes 1.31+, and
//! `ttlSecondsAfterFinished`. Durations are simulated.

use super::engine::{Action, Engine, JobRuntime, Kind};
use super::objects::{condition, has_condition, set_condition};
use super::view::{Key, PodView};
use super::workloads::pod_from_template;
use crate::meta;
use serde_json::{Map, Value, json};

/// Back-off after the n-th failure: 10s doubling, capped at 6 minutes.
fn backoff(failures: i64) -> f64 {
    (10.0 * 2f64.powi((failures - 1).clamp(0, 10) as i32)).min(360.0)
}

impl Engine {
    pub(crate) fn reconcile_job(&mut self, key: &Key) {
        let Some(job) = self.obj(Kind::Job, key).cloned() else {
            return;
        };
        if job.deleting() {
            return;
        }
        let now = self.now();
        let uid: Box<str> = Box::from(job.uid());
        let st = &job.v["status"];
        let conds = &st["conditions"];
        let finished = has_condition(conds, "Complete") || has_condition(conds, "Failed");
        let rt = self.jobs.entry(uid.clone()).or_insert_with(|| JobRuntime {
            succeeded: st["succeeded"].as_i64().unwrap_or(0),
            failed: st["failed"].as_i64().unwrap_or(0),
            ..Default::default()
        });
        if finished {
            let done = *rt.finished.get_or_insert(now);
            if let Some(ttl) = job.v["spec"]["ttlSecondsAfterFinished"].as_f64() {
                if now >= done + ttl {
                    self.delete_obj(Kind::Job, key);
                } else {
                    let at = done + ttl;
                    self.timers.add(at, Action::Reconcile(Kind::Job, key.clone()));
                }
            }
            return;
        }
        let start = *rt.start.get_or_insert(now);
        // Count each finished pod once, even after it is deleted.
        let pods: Vec<PodView> = self.owned_pods(job.uid()).into_iter().cloned().collect();
        let rt = self.jobs.get_mut(&uid).expect("inserted above");
        for p in &pods {
            if p.terminal() && rt.counted.insert(p.uid.clone()) {
                if p.phase == "Succeeded" {
                    rt.succeeded += 1;
                } else {
                    rt.failed += 1;
                    rt.last_failure = now;
                }
            }
        }
        let (succeeded, failed, last_failure) = (rt.succeeded, rt.failed, rt.last_failure);
        let active: Vec<&PodView> = pods.iter().filter(|p| p.active()).collect();
        let terminating = pods.iter().filter(|p| p.deleting && !p.terminal()).count();
        let ready = active.iter().filter(|p| p.ready).count();
        let spec = &job.v["spec"];
        let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
        let completions = spec["completions"].as_i64().unwrap_or(1).max(1);
        let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
        let suspended = spec["suspend"] == true;
        let wall = meta::now();
        let mut conds = conds.clone();
        let target = if has_condition(&conds, "FailureTarget") {
            Some(false)
        } else if has_condition(&conds, "SuccessCriteriaMet") {
            Some(true)
        } else {
            let deadline = spec["activeDeadlineSeconds"].as_f64();
            let verdict: Option<(bool, &str, &str)> = if succeeded >= completions {
                Some((true, "CompletionsReached", "Reached expected number of succeeded pods"))
            } else if failed > backoff_limit {
                Some((
                    false,
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                ))
            } else if deadline.is_some_and(|d| now >= start + d) {
                Some((
                    false,
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                ))
            } else {
                None
            };
            if let Some(d) = deadline {
                self.timers.add(start + d, Action::Reconcile(Kind::Job, key.clone()));
            }
            match verdict {
                Some((ok, reason, msg)) => {
                    let t = if ok { "SuccessCriteriaMet" } else { "FailureTarget" };
                    set_condition(&mut conds, condition(t, true, reason, msg, &wall));
                    Some(ok)
                }
                None => None,
            }
        };
        let mut st = Map::new();
        match target {
            Some(ok) => {
                for p in &active {
                    self.delete_pod(&p.key(), None);
                }
                if active.is_empty() && terminating == 0 {
                    let (t, c) = if ok {
                        ("SuccessCriteriaMet", "Complete")
                    } else {
                        ("FailureTarget", "Failed")
                    };
                    let base = conds
                        .as_array()
                        .and_then(|a| a.iter().find(|x| x["type"] == t))
                        .cloned()
                        .unwrap_or(Value::Null);
                    let reason = base["reason"].as_str().unwrap_or("");
                    let msg = base["message"].as_str().unwrap_or("");
                    set_condition(&mut conds, condition(c, true, reason, msg, &wall));
                    if ok {
                        st.insert("completionTime".into(), json!(wall));
                    }
                }
            }
            None if suspended => {
                for p in &active {
                    self.delete_pod(&p.key(), None);
                }
            }
            None => {
                let want = parallelism.min(completions - succeeded).max(0) as usize;
                let retry_at = if failed > 0 {
                    last_failure + backoff(failed)
                } else {
                    0.0
                };
                if active.len() < want {
                    if now < retry_at && !self.bootstrapping {
                        self.timers.add(retry_at, Action::Reconcile(Kind::Job, key.clone()));
                    } else {
                        let mut tpl = spec["template"].clone();
                        if tpl["spec"]["restartPolicy"].is_null() {
                            tpl["spec"]["restartPolicy"] = json!("Never");
                        }
                        let owner = json!({"apiVersion": "batch/v1", "kind": "Job", "name": job.name(), "uid": job.uid(), "controller": true, "blockOwnerDeletion": true});
                        for _ in active.len()..want {
                            let mut pod = pod_from_template(
                                &tpl,
                                job.ns(),
                                owner.clone(),
                                &[
                                    ("batch.kubernetes.io/controller-uid", job.uid().to_string()),
                                    ("batch.kubernetes.io/job-name", job.name().to_string()),
                                    ("controller-uid", job.uid().to_string()),
                                    ("job-name", job.name().to_string()),
                                ],
                            );
                            pod["metadata"]["generateName"] = json!(format!("{}-", job.name()));
                            self.create(&Kind::Pod.gr(), job.ns(), pod);
                        }
                    }
                }
            }
        }
        if st_start_missing(&job.v) {
            st.insert("startTime".into(), json!(wall));
        }
        st.insert("active".into(), json!(active.len()));
        st.insert("ready".into(), json!(ready));
        st.insert("succeeded".into(), json!(succeeded));
        st.insert("failed".into(), json!(failed));
        st.insert("terminating".into(), json!(terminating));
        st.insert("uncountedTerminatedPods".into(), json!({}));
        if !conds.is_null() {
            st.insert("conditions".into(), conds);
        }
        self.write(&Kind::Job.gr(), key, Some("status"), |v| {
            let mut changed = false;
            for (k, x) in &st {
                if v["status"][k] != *x {
                    v["status"][k] = x.clone();
                    changed = true;
                }
            }
            changed
        });
    }
}

fn st_start_missing(v: &Value) -> bool {
    v["status"]["startTime"].is_null()
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(super::backoff(1), 10.0);
        assert_eq!(super::backoff(3), 40.0);
        assert_eq!(super::backoff(9), 360.0);
    }
}
