//! Runs the gateway from a TOML file until SIGINT/SIGTERM (what `meshwork gateway --config FILE`
//! does): `cargo run -p meshwork-gateway --example run_gateway -- gateway/examples/gateway.toml`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let path = std::env::args().nth(1).ok_or("usage: run_gateway CONFIG.toml")?;
    let config = meshwork_gateway::GatewayConfig::from_file(path)?;
    config.validate()?;
    meshwork_gateway::run(config)?;
    Ok(())
}
