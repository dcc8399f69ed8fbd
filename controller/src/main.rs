use clap::Parser;

fn main() {
    // One crypto provider for every TLS client and server in the process (kube, the webhook,
    // the AWS SDK): ring. Set explicitly so no feature unification can make it ambiguous.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Usage errors exit 1, not clap's default 2: `slipway plan` uses 2 for "changes, all allowed".
    let cli = match slipway::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match slipway::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
