//! Runs the gateway from a TOML file until SIGINT/SIGTERM (what `meshwork gateway --config FILE`
//! does): `cargo run -p meshwork-proxy --example run_gateway -- proxy/examples/gateway.toml`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let path = std::env::args().nth(1).ok_or("usage: run_gateway CONFIG.toml")?;
    let config = meshwork_proxy::GatewayConfig::from_file(path)?;
    config.validate()?;
    meshwork_proxy::run(config)?;
    Ok(())
}
