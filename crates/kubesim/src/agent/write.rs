//! Read-modify-write of objects and their status subresource, with the
//! object's resourceVersion as precondition and bounded retries on conflict
//! (KWOK writes node and pod status at the same time).

use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Debug;

/// Conflicts retried before giving up.
const ATTEMPTS: usize = 20;

/// Applies `f` to the object's JSON and replaces the object if `f` returns
/// true. Ok(false): no such object, or `f` declined.
pub async fn modify<K>(api: &Api<K>, name: &str, f: impl FnMut(&mut Value) -> bool) -> Result<bool, String>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    rmw(api, name, false, f).await
}

/// The same through the status subresource.
pub async fn modify_status<K>(api: &Api<K>, name: &str, f: impl FnMut(&mut Value) -> bool) -> Result<bool, String>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    rmw(api, name, true, f).await
}

async fn rmw<K>(api: &Api<K>, name: &str, status: bool, mut f: impl FnMut(&mut Value) -> bool) -> Result<bool, String>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        let Some(obj) = api.get_opt(name).await.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let mut v = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
        if !f(&mut v) {
            return Ok(false);
        }
        let new: K = serde_json::from_value(v).map_err(|e| e.to_string())?;
        let pp = PostParams::default();
        let res = if status {
            api.replace_status(name, &pp, &new).await
        } else {
            api.replace(name, &pp, &new).await
        };
        match res {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                last = s.message.clone();
                tokio::time::sleep(std::time::Duration::from_millis(20 * (attempt as u64 + 1))).await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("still conflicting after {ATTEMPTS} attempts: {last}"))
}
