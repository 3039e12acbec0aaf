//! Where message schemas come from: gRPC server reflection (v1, falling back to v1alpha for
//! servers of the grpcurl 1.8 era) or a protoset file (`protoc --descriptor_set_out
//! --include_imports`). Either way the result is a prost-reflect `DescriptorPool` seeded
//! with the well-known types, and the method is looked up in it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use prost::Message;
use prost_reflect::{DescriptorPool, MethodDescriptor};
use prost_types::FileDescriptorProto;
use tonic::transport::Channel;

use crate::Error;
use crate::template::MethodNames;

/// Splits `pkg.Service/Method` (or `pkg.Service.Method`) into service and method names.
pub fn split_call(call: &str) -> Result<(&str, &str), Error> {
    let (service, method) = match call.rsplit_once('/') {
        Some(parts) => parts,
        None => call
            .rsplit_once('.')
            .ok_or_else(|| Error::Config(format!("--call {call:?}: expected package.Service/Method")))?,
    };
    let service = service.trim_start_matches('/');
    if service.is_empty() || method.is_empty() {
        return Err(Error::Config(format!("--call {call:?}: expected package.Service/Method")));
    }
    Ok((service, method))
}

/// Returns the method `call` names in `pool`.
pub fn find_method(pool: &DescriptorPool, call: &str) -> Result<MethodDescriptor, Error> {
    let (service, method) = split_call(call)?;
    let svc =
        pool.get_service_by_name(service).ok_or_else(|| Error::Schema(format!("service {service:?} not found")))?;
    let found = svc.methods().find(|m| m.name() == method);
    let m = found.ok_or_else(|| Error::Schema(format!("method {method:?} not found in {service}")))?;
    if m.is_client_streaming() || m.is_server_streaming() {
        return Err(Error::Schema(format!("{call}: only unary methods are supported")));
    }
    Ok(m)
}

/// Returns the names a template may refer to for `method`.
pub fn method_names(method: &MethodDescriptor) -> MethodNames {
    MethodNames {
        fully_qualified: method.full_name().to_string(),
        method: method.name().to_string(),
        service: method.parent_service().name().to_string(),
        input: method.input().name().to_string(),
        output: method.output().name().to_string(),
    }
}

/// Loads a protoset (an encoded `FileDescriptorSet`).
pub fn from_protoset(path: &Path) -> Result<DescriptorPool, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut pool = DescriptorPool::global();
    pool.decode_file_descriptor_set(bytes.as_slice()).map_err(|e| Error::Schema(format!("{}: {e}", path.display())))?;
    Ok(pool)
}

/// Compiles a `.proto` file (and its imports, found in `import_paths` and the file's own
/// folder) in-process with protox, as ghz's `--proto` / `--import-paths` do.
pub fn from_proto(path: &Path, import_paths: &[std::path::PathBuf]) -> Result<DescriptorPool, Error> {
    let mut includes: Vec<std::path::PathBuf> = import_paths.to_vec();
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    includes.push(folder.to_path_buf());
    let file = path.strip_prefix(folder).unwrap_or(path);
    let set = protox::compile([file], &includes).map_err(|e| Error::Schema(format!("{}: {e}", path.display())))?;
    let mut pool = DescriptorPool::global();
    pool.add_file_descriptor_set(set).map_err(|e| Error::Schema(format!("{}: {e}", path.display())))?;
    Ok(pool)
}

/// Fetches the files that define `services` (and their imports) by server reflection at
/// `addr` (`host:port`, plaintext): v1 first, v1alpha when the server does not implement v1.
pub async fn from_reflection(addr: &str, services: &[&str], timeout: Duration) -> Result<DescriptorPool, Error> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Config(format!("target {addr:?}: {e}")))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| Error::Connect { addr: addr.to_string(), reason: e.to_string() })?;
    let files = match v1::fetch(channel.clone(), services).await {
        Ok(files) => files,
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            tracing::debug!(%addr, "reflection v1 unimplemented, trying v1alpha");
            v1alpha::fetch(channel, services)
                .await
                .map_err(|s| Error::Reflection(format!("v1alpha: {}", s.message())))?
        }
        Err(status) => return Err(Error::Reflection(format!("v1: {:?}: {}", status.code(), status.message()))),
    };
    let mut pool = DescriptorPool::global();
    pool.add_file_descriptor_protos(order(files)).map_err(|e| Error::Schema(e.to_string()))?;
    Ok(pool)
}

/// Returns the files with every dependency before the files that import it.
fn order(files: BTreeMap<String, FileDescriptorProto>) -> Vec<FileDescriptorProto> {
    fn visit(
        name: &str,
        files: &BTreeMap<String, FileDescriptorProto>,
        seen: &mut HashSet<String>,
        out: &mut Vec<FileDescriptorProto>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some(f) = files.get(name) {
            for dep in &f.dependency {
                visit(dep, files, seen, out);
            }
            out.push(f.clone());
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for name in files.keys() {
        visit(name, &files, &mut seen, &mut out);
    }
    out
}

/// Decodes reflection's file list into `files`, returning names of imports still missing.
fn absorb(raw: Vec<Vec<u8>>, files: &mut BTreeMap<String, FileDescriptorProto>) -> Result<Vec<String>, tonic::Status> {
    for bytes in raw {
        let f = FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|e| tonic::Status::internal(format!("bad file descriptor from reflection: {e}")))?;
        files.insert(f.name().to_string(), f);
    }
    let known = DescriptorPool::global();
    let missing = files
        .values()
        .flat_map(|f| f.dependency.iter())
        .filter(|d| !files.contains_key(*d) && known.get_file_by_name(d).is_none())
        .cloned()
        .collect();
    Ok(missing)
}

/// The same client code for both reflection versions (their generated types are identical
/// but distinct).
macro_rules! reflection_client {
    ($name:ident, $pb:path) => {
        mod $name {
            use std::collections::BTreeMap;

            use prost_types::FileDescriptorProto;
            use tonic::transport::Channel;

            use pb::server_reflection_client::ServerReflectionClient;
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;
            use $pb as pb;

            async fn ask(
                client: &mut ServerReflectionClient<Channel>,
                request: MessageRequest,
            ) -> Result<Vec<Vec<u8>>, tonic::Status> {
                let req = pb::ServerReflectionRequest { host: String::new(), message_request: Some(request) };
                let mut stream = client.server_reflection_info(futures::stream::iter([req])).await?.into_inner();
                let response =
                    stream.message().await?.ok_or_else(|| tonic::Status::internal("reflection stream ended early"))?;
                match response.message_response {
                    Some(MessageResponse::FileDescriptorResponse(f)) => Ok(f.file_descriptor_proto),
                    Some(MessageResponse::ErrorResponse(e)) => {
                        Err(tonic::Status::new(tonic::Code::from_i32(e.error_code), e.error_message))
                    }
                    _ => Err(tonic::Status::internal("unexpected reflection response")),
                }
            }

            pub(super) async fn fetch(
                channel: Channel,
                services: &[&str],
            ) -> Result<BTreeMap<String, FileDescriptorProto>, tonic::Status> {
                let mut client = ServerReflectionClient::new(channel);
                let mut files = BTreeMap::new();
                for service in services {
                    let raw = ask(&mut client, MessageRequest::FileContainingSymbol(service.to_string())).await?;
                    let mut missing = super::absorb(raw, &mut files)?;
                    while let Some(name) = missing.pop() {
                        let raw = ask(&mut client, MessageRequest::FileByFilename(name)).await?;
                        missing = super::absorb(raw, &mut files)?;
                    }
                }
                Ok(files)
            }
        }
    };
}

reflection_client!(v1, tonic_reflection::pb::v1);
reflection_client!(v1alpha, tonic_reflection::pb::v1alpha);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_calls() {
        assert_eq!(split_call("a.b.Svc/Do").unwrap(), ("a.b.Svc", "Do"));
        assert_eq!(split_call("a.b.Svc.Do").unwrap(), ("a.b.Svc", "Do"));
        assert_eq!(split_call("/a.Svc/Do").unwrap(), ("a.Svc", "Do"));
        assert!(split_call("nothing").is_err());
        assert!(split_call("a.Svc/").is_err());
    }
}
