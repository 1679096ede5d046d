//! Services: `type: ClusterIP`, `sessionAffinity: None`, port protocol and
//! targetPort defaults, and a cluster IP from 10.96.0.0/16 on create.

use super::super::resources::ResourceType;
use super::super::validation::{self, Typed};
use super::{Strategy, reset_status};
use k8s_openapi::api::core::v1 as core;
use serde_json::{Value, json};

pub struct Service;

impl Strategy for Service {
    fn typed(&self) -> Option<Typed> {
        Some(validation::round_trip::<core::Service>)
    }

    fn prepare_for_create(&self, t: &ResourceType, obj: &mut Value, rv: u64) {
        reset_status(t, obj);
        let spec = &mut obj["spec"];
        if spec["type"].is_null() {
            spec["type"] = json!("ClusterIP");
        }
        if spec["sessionAffinity"].is_null() {
            spec["sessionAffinity"] = json!("None");
        }
        if let Some(ports) = spec["ports"].as_array_mut() {
            for p in ports {
                if p["protocol"].is_null() {
                    p["protocol"] = json!("TCP");
                }
                if p["targetPort"].is_null() {
                    p["targetPort"] = p["port"].clone();
                }
            }
        }
        // A cluster IP from 10.96.0.0/16, unique per creation (the rv is).
        if spec["type"] != "ExternalName" && spec["clusterIP"].is_null() {
            let ip = format!("10.96.{}.{}", (rv / 250) % 256, rv % 250 + 1);
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
            spec["ipFamilies"] = json!(["IPv4"]);
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
}
