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
    /// The module's rustdoc: an example call of each of the package's services.
    doc: String,
    children: BTreeMap<String, Module>,
}

impl Module {
    fn insert(&mut self, segments: &[&str], package: &str, doc: String) {
        match segments.split_first() {
            None => {
                self.package = Some(package.to_string());
                self.doc.push_str(&doc);
            }
            Some((first, rest)) => self.children.entry(first.to_string()).or_default().insert(rest, package, doc),
        }
    }

    fn render(&self, name: &str, out: &mut String) {
        for line in self.doc.lines() {
            let _ = writeln!(out, "#[doc = {line:?}]");
        }
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

/// The name prost and tonic give a method's Rust function (`GetHomeTimeline` ->
/// `get_home_timeline`, `GetURL` -> `get_url`), raw when it is a keyword (`Move` -> `r#move`).
fn method_fn_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut s = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                s.push('_');
            }
        }
        s.push(c.to_ascii_lowercase());
    }
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
        "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
        "static", "struct", "super", "trait", "true", "try", "type", "unsafe", "use", "where", "while", "yield",
    ];
    if KEYWORDS.contains(&s.as_str()) { format!("r#{s}") } else { s }
}

/// The rustdoc of a package's module: for each service, how to call it through the gateway
/// with the generated client, on its first unary method whose request is of this package.
/// Generated, so a new `.proto` gets its example with no edit; `cargo test --doc` compiles
/// every one.
fn package_doc(file: &prost_types::FileDescriptorProto, path: &str) -> String {
    let package = file.package();
    let mut doc = String::new();
    for service in &file.service {
        let name = service.name();
        let client = format!("{}_client", naive_snake_case(name));
        let prefix = format!(".{package}.");
        let Some(method) = service.method.iter().find(|m| {
            !m.client_streaming()
                && !m.server_streaming()
                && m.input_type().strip_prefix(&prefix).is_some_and(|t| !t.contains('.'))
        }) else {
            continue;
        };
        let request = method.input_type().strip_prefix(&prefix).unwrap_or_default();
        let call = method_fn_name(method.name());
        let _ = write!(
            doc,
            "`{package}.{name}`: call it through the gateway (`meshwork up` serves every service on \
             127.0.0.1:8080) with the generated client, a deadline and, where the gateway asks for \
             one, a bearer token:\n\n\
             ```no_run\n\
             # async fn example() -> Result<(), Box<dyn std::error::Error>> {{\n\
             use meshwork_proto::{path}::{client}::{name}Client;\n\
             use meshwork_proto::{path}::{request};\n\n\
             let mut client = {name}Client::connect(\"http://127.0.0.1:8080\").await?;\n\
             let mut request = tonic::Request::new({request}::default());\n\
             request.set_timeout(std::time::Duration::from_secs(5));\n\
             // request.metadata_mut().insert(\"authorization\", \"Bearer <token>\".parse()?);\n\
             let reply = client.{call}(request).await?.into_inner();\n\
             println!(\"{{reply:?}}\");\n\
             # Ok(())\n\
             # }}\n\
             ```\n\n"
        );
    }
    if doc.is_empty() {
        format!("Types of `{package}`.")
    } else {
        format!("Types and clients of `{package}`.\n\n{doc}")
    }
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
        let path = std::iter::once(root).chain(segments[1..].iter().copied()).collect::<Vec<_>>().join("::");
        roots.entry(root.to_string()).or_default().insert(&segments[1..], package, package_doc(file, &path));
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
