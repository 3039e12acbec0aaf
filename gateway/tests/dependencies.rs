//! The gateway knows no service: its normal (non-dev) dependency graph holds neither the crate
//! of generated service code (`meshwork-proto`) nor any service crate (`services/*`). Service
//! descriptors reach it through `GatewayConfig::descriptor_sets`; tests may use them as
//! dev-dependencies.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::Value;

#[test]
fn the_gateway_depends_on_no_service_code() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata answers JSON");

    let workspace_root = metadata["workspace_root"].as_str().expect("workspace_root");
    let services_dir = Path::new(workspace_root).join("services");
    // Package id -> (name, manifest path).
    let packages: HashMap<&str, (&str, &str)> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or(""),
                (p["name"].as_str().unwrap_or(""), p["manifest_path"].as_str().unwrap_or("")),
            )
        })
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|n| (n["id"].as_str().unwrap_or(""), n))
        .collect();
    let root = packages
        .iter()
        .find(|(_, (name, _))| *name == "meshwork-gateway")
        .map(|(id, _)| *id)
        .expect("meshwork-gateway");

    // Every package reachable from the gateway through normal (and build) dependencies.
    let mut seen = BTreeSet::new();
    let mut stack = vec![(root, vec!["meshwork-gateway".to_string()])];
    let mut offending = Vec::new();
    while let Some((id, chain)) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(node) = nodes.get(id) else { continue };
        for dep in node["deps"].as_array().into_iter().flatten() {
            let not_dev = dep["dep_kinds"].as_array().into_iter().flatten().any(|k| k["kind"].as_str() != Some("dev"));
            if !not_dev {
                continue;
            }
            let dep_id = dep["pkg"].as_str().unwrap_or("");
            let (name, manifest) = packages.get(dep_id).copied().unwrap_or(("?", ""));
            let mut chain = chain.clone();
            chain.push(name.to_string());
            if name == "meshwork-proto" || Path::new(manifest).starts_with(&services_dir) {
                offending.push(chain.join(" -> "));
            }
            stack.push((dep_id, chain));
        }
    }
    assert!(seen.len() > 10, "the walk found the gateway's dependencies ({} packages)", seen.len());
    assert!(offending.is_empty(), "the gateway depends on service code: {offending:#?}");
}
