//! The one table of the mesh's services. Everything that lists services is generated from it:
//! `meshwork serve <name>` and its `--help`, `meshwork up`, and the gateway's default routes
//! (with each service's idempotent methods and HTTP routes). Adding a service is a crate, a
//! `.proto` under `proto/`, and one line here (README, "Adding a service").

use meshwork_common::spec::ServiceSpec;

/// Every service of the mesh, in the order `meshwork up` starts them.
pub fn specs() -> Vec<ServiceSpec> {
    vec![
        meshwork_urlshortener::spec(),
        meshwork_echo::spec(),
        meshwork_catalog::spec(),
        meshwork_inventory::spec(),
        meshwork_orders::spec(),
        meshwork_payments::spec(),
        meshwork_ratings::spec(),
        meshwork_recommendation::spec(),
        meshwork_parking::spec(),
        meshwork_library::spec(),
        meshwork_meetings::spec(),
        meshwork_appstore::spec(),
        meshwork_waste::spec(),
        meshwork_contacttracing::spec(),
        meshwork_timeline::spec(),
        meshwork_logging::spec(),
        meshwork_warehouse::spec(),
    ]
}

/// Returns the spec named `name`.
pub fn find(name: &str) -> Option<ServiceSpec> {
    specs().into_iter().find(|s| s.name == name)
}

/// Returns every service's short name.
pub fn names() -> Vec<&'static str> {
    specs().iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// Every gRPC service described under `proto/` has a spec in the table, and every spec's
    /// services are described: a `.proto` without a spec (or the reverse) fails here.
    #[test]
    fn every_proto_service_has_a_spec() {
        let set = prost_types::FileDescriptorSet::decode(meshwork_proto::FILE_DESCRIPTOR_SET).unwrap();
        let described: BTreeSet<String> = set
            .file
            .iter()
            .filter(|f| f.package().starts_with("meshwork."))
            .flat_map(|f| f.service.iter().map(move |s| format!("{}.{}", f.package(), s.name())))
            .collect();
        let specified: BTreeSet<String> =
            specs().iter().flat_map(|s| s.grpc_services.iter().map(|n| n.to_string())).collect();
        assert!(!described.is_empty());
        assert_eq!(described, specified, "every service in proto/ needs a line in src/services.rs (and the reverse)");

        // And every .proto file on disk is in the descriptor set (build.rs compiles them all).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/meshwork");
        let mut on_disk = BTreeSet::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "proto") {
                    on_disk.insert(path.strip_prefix(root.parent().unwrap()).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let compiled: BTreeSet<String> =
            set.file.iter().map(|f| f.name().to_string()).filter(|n| n.starts_with("meshwork/")).collect();
        assert_eq!(on_disk, compiled);
    }

    #[test]
    fn names_are_unique_and_usable_on_the_command_line() {
        let names = names();
        let unique: BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "a service name is used twice");
        for name in names {
            assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{name}");
        }
    }
}
