//! Compiles every .proto under `meshwork/` with protoc, writes a file descriptor set that the
//! services and the gateway serve through gRPC reflection, and generates from that set what
//! used to be kept by hand: the `pb` module tree (one module per package) and a
//! [`MessageLimits`] impl for every generated server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost::Message;

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// A module of the generated tree: the package whose code it includes, and its children.
#[derive(Default)]
struct Module {
    package: Option<String>,
    children: BTreeMap<String, Module>,
}

impl Module {
    fn insert(&mut self, segments: &[&str], package: &str) {
        match segments.split_first() {
            None => self.package = Some(package.to_string()),
            Some((first, rest)) => self.children.entry(first.to_string()).or_default().insert(rest, package),
        }
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "pub mod {name} {{");
        if let Some(package) = &self.package {
            let _ = writeln!(out, "tonic::include_proto!({package:?});");
        }
        for (child, module) in &self.children {
            module.render(child, out);
        }
        let _ = writeln!(out, "}}");
    }
}

/// The module name tonic-build gives a service's server (`UrlShortener` -> `url_shortener`).
fn naive_snake_case(name: &str) -> String {
    let mut s = String::new();
    let mut it = name.chars().peekable();
    while let Some(x) = it.next() {
        s.push(x.to_ascii_lowercase());
        if it.peek().is_some_and(|y| y.is_uppercase()) {
            s.push('_');
        }
    }
    s
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos = Vec::new();
    collect(Path::new("meshwork"), &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed=meshwork");
    println!("cargo:rerun-if-changed=google");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("meshwork_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_protos(&protos, &[PathBuf::from(".")])?;

    // The module tree mirrors the packages, so that generated code's `super::` paths between
    // packages resolve; the `meshwork` root is called `pb`, anything else (e.g. `google.api`)
    // sits at the crate root. `google.protobuf` maps to prost-types.
    let set = prost_types::FileDescriptorSet::decode(std::fs::read(&descriptor_path)?.as_slice())?;
    let mut roots: BTreeMap<String, Module> = BTreeMap::new();
    let mut limits = String::new();
    for file in &set.file {
        let package = file.package();
        if package.is_empty() || package.starts_with("google.protobuf") {
            continue;
        }
        let segments: Vec<&str> = package.split('.').collect();
        let root = if segments[0] == "meshwork" { "pb" } else { segments[0] };
        roots.entry(root.to_string()).or_default().insert(&segments[1..], package);
        let path = std::iter::once(root).chain(segments[1..].iter().copied()).collect::<Vec<_>>().join("::");
        for service in &file.service {
            let name = service.name();
            let module = format!("crate::{path}::{}_server", naive_snake_case(name));
            let _ = writeln!(
                limits,
                "impl<T: {module}::{name}> crate::MessageLimits for {module}::{name}Server<T> {{\n\
                 fn with_message_limits(self, max: usize) -> Self {{\n\
                 self.max_decoding_message_size(max).max_encoding_message_size(max)\n}}\n}}"
            );
        }
    }
    let mut tree = String::new();
    for (name, module) in &roots {
        module.render(name, &mut tree);
    }
    std::fs::write(out.join("pb_tree.rs"), tree)?;
    std::fs::write(out.join("message_limits.rs"), limits)?;
    Ok(())
}
