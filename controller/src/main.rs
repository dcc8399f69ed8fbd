use clap::Parser;

fn main() {
    let cli = slipway::cli::Cli::parse();
    match slipway::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
