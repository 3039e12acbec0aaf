//! Compiles every .proto under `meshwork/` with protoc and writes a file descriptor set
//! that the services and the gateway serve through gRPC reflection.

use std::path::{Path, PathBuf};

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos = Vec::new();
    collect(Path::new("meshwork"), &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed=meshwork");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("meshwork_descriptor.bin"))
        .compile_protos(&protos, &[PathBuf::from(".")])?;
    Ok(())
}
