use clap::Parser;

/// mimalloc: `validate` and `plan` take a quarter to a third less time than with glibc's
/// malloc, and a controller holds less (BENCHMARKS.md; built as `.cargo/config.toml` says).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[cfg(test)]
mod tests {
    /// mimalloc is built to commit memory as it is used (`.cargo/config.toml`): option 4 of
    /// mimalloc v3's `mi_option_t`, `arena_eager_commit`, is 0 (its own default is 2).
    #[test]
    fn mimalloc_commits_memory_as_it_is_used() {
        // SAFETY: reads one of mimalloc's options.
        let eager = unsafe { libmimalloc_sys::mi_option_get(4) };
        assert_eq!(
            eager, 0,
            "mimalloc was built without .cargo/config.toml's CFLAGS, or mi_option_t moved"
        );
    }
}
