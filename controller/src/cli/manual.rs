//! `slipway man` and `slipway completions`: the manual pages and shell completions, from the
//! command-line definition itself so they never drift from the binary. Each page ends with the
//! command's exit status and the environment it reads; hidden options stay out of both.

use std::path::Path;

use clap::{Command, CommandFactory};

use super::Cli;

/// The exit status a command documents, as roff paragraphs.
fn exit_status(name: &str) -> &'static str {
    match name {
        "validate" => {
            "0: every file is valid. 1: something is not (each error names file:line), or a folder holds no Slipway objects, or the input cannot be read."
        }
        "plan" => {
            "0: no changes. 2: every change is allowed. 3: some change is denied or awaiting approval. 1: errors (invalid YAML in either revision, an immutable field changed, a bad revision, unreadable input)."
        }
        "run" => {
            "With --once: 0 when everything the registry asks for is in place; 3 when something is not (a move held by policy or waiting, a deployment that stands rolled back or failed, a failed evaluation of a version an alias asks for); 1 on errors (an invalid revision, a deployment that could not be rolled out, a state that cannot be written, another run using the same --state). Without --once: 0 when stopped by SIGTERM or Ctrl-C, 1 when it cannot start."
        }
        "status" | "history" => {
            "0: shown. 1: no state there, a model the state does not know (with the names it does), or an instance that cannot be reached."
        }
        "retry" => {
            "0: the retry is requested (the next pass takes it). 1: nothing to retry (with why), an unknown deployment or evaluation, or an instance that refuses the token."
        }
        "controller" => {
            "0: stopped by SIGTERM or Ctrl-C. 1: it cannot start (no cluster configuration, an address taken, a certificate that cannot be read)."
        }
        "init" => {
            "0: the registry is written. 1: the folder is not empty of what it would write, or cannot be written."
        }
        _ => "0: done. 1: an error, said on standard error.",
    }
}

/// What a command reads from the environment beyond its options' own variables.
fn environment(name: &str) -> &'static [(&'static str, &'static str)] {
    const TOKEN: (&str, &str) = (
        "SLIPWAY_API_TOKEN",
        "The API token of a running `slipway run --listen` given as --state URL (needed to retry, and to read webhook runners whole).",
    );
    match name {
        "status" | "history" | "retry" | "plan" => &[TOKEN],
        "run" => &[
            (
                "GIT_SSH_COMMAND, GIT_SSH",
                "How git sources over SSH are fetched.",
            ),
            ("NO_COLOR", "No colour on a terminal."),
            (
                "AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, …",
                "The AWS SDK's chain, for SageMaker targets.",
            ),
        ],
        "controller" => &[
            (
                "KUBECONFIG",
                "The cluster to use outside a pod (in a pod: its service account).",
            ),
            ("SLIPWAY_LOG", "The log filter, e.g. `info,kube=warn`."),
            (
                "POD_NAME",
                "This replica's name in the Lease and in events.",
            ),
            (
                "AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, …",
                "The AWS SDK's chain, for SageMaker targets.",
            ),
        ],
        _ => &[],
    }
}

/// Escapes text for a roff paragraph.
fn roff(text: &str) -> String {
    text.replace('\\', "\\\\")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The EXIT STATUS and ENVIRONMENT sections of command `name` (`cmd`'s options with a variable,
/// and what else it reads).
fn sections(name: &str, cmd: &Command) -> String {
    let mut out = format!(".SH \"EXIT STATUS\"\n{}\n", roff(exit_status(name)));
    let mut vars: Vec<(String, String)> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let var = a.get_env()?.to_string_lossy().into_owned();
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            let long = a
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
            Some((var, format!("The default of {long}: {help}")))
        })
        .collect();
    vars.extend(
        environment(name)
            .iter()
            .map(|(v, h)| (v.to_string(), h.to_string())),
    );
    if !vars.is_empty() {
        out.push_str(".SH ENVIRONMENT\n");
        for (var, help) in vars {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(&var), roff(&help)));
        }
    }
    out
}

/// The top page, `slipway(1)`.
pub fn top_page() -> anyhow::Result<Vec<u8>> {
    let cmd = visible(&Cli::command());
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    out.extend_from_slice(
        ".SH \"EXIT STATUS\"\nEach command's page says its own: \\fBvalidate\\fR 0 valid, 1 not; \\fBplan\\fR 0 no changes, 2 allowed, 3 denied or awaiting approval, 1 errors; \\fBrun --once\\fR 0 in place, 3 held, 1 errors; otherwise 0, or 1 on errors.\n.SH ENVIRONMENT\nOptions name their variables on each command's page; \\fBslipway-controller\\fR(1) and \\fBslipway-run\\fR(1) list what else they read.\n"
        .as_bytes(),
    );
    Ok(out)
}

/// Every page: `slipway.1` and `slipway-COMMAND.1` for each command, as (file name, roff).
pub fn pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let top = visible(&Cli::command());
    let mut pages = vec![("slipway.1".to_string(), top_page()?)];
    for sub in top.get_subcommands() {
        let name = sub.get_name().to_string();
        // (Names given to clap are `&'static str`; this runs once, in a short-lived process.)
        let title: &'static str = Box::leak(format!("slipway-{name}").into_boxed_str());
        let usage: &'static str = Box::leak(format!("slipway {name}").into_boxed_str());
        let page = sub.clone().name(title).bin_name(usage);
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        out.extend_from_slice(sections(&name, sub).as_bytes());
        pages.push((format!("slipway-{name}.1"), out));
    }
    Ok(pages)
}

/// Writes every page into `dir`; returns the files written.
pub fn write_pages(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (name, roff) in pages()? {
        let path = dir.join(name);
        std::fs::write(&path, roff)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `cmd` without its hidden options and commands (clap's completion generators offer them).
pub fn visible(cmd: &Command) -> Command {
    let mut out = cmd.clone();
    let hidden: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .map(|a| a.get_id().to_string())
        .collect();
    if !hidden.is_empty() {
        // Rebuilt from the visible options: clap cannot remove one.
        let name: &'static str = Box::leak(cmd.get_name().to_string().into_boxed_str());
        out = Command::new(name).args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned());
        if let Some(about) = cmd.get_about() {
            out = out.about(about.clone());
        }
        if let Some(about) = cmd.get_long_about() {
            out = out.long_about(about.clone());
        }
        for sub in cmd.get_subcommands() {
            out = out.subcommand(sub.clone());
        }
    }
    let subs: Vec<Command> = out
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(visible)
        .collect();
    for s in subs {
        let name = s.get_name().to_string();
        out = out.mut_subcommand(name, |_| s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_page_with_its_exit_status_and_the_top_page_names_only_those() {
        let pages = pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        let text = |n: &str| {
            String::from_utf8(pages.iter().find(|(x, _)| x == n).unwrap().1.clone()).unwrap()
        };
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            let page = format!("slipway-{}.1", sub.get_name());
            assert!(names.contains(&page.as_str()), "{page} missing: {names:?}");
            assert!(text(&page).contains(".SH \"EXIT STATUS\""), "{page}");
        }
        // Every `slipway-X(1)` the top page refers to is a page.
        let top = text("slipway.1");
        for word in top.split(|c: char| !(c.is_alphanumeric() || c == '-')) {
            if let Some(sub) = word.strip_prefix("slipway-")
                && !sub.is_empty()
            {
                assert!(
                    names.contains(&format!("slipway-{sub}.1").as_str()),
                    "{word}"
                );
            }
        }
        assert!(
            top.contains("slipway\\-plan(1)") || top.contains("slipway-plan(1)"),
            "{top}"
        );
        let plan = text("slipway-plan.1");
        assert!(
            plan.contains("3: some change is denied or awaiting approval"),
            "{plan}"
        );
        assert!(
            !plan.contains("\\-\\-now") && !plan.contains("--now"),
            "a hidden option is on the page: {plan}"
        );
        let run = text("slipway-run.1");
        assert!(run.contains("SLIPWAY_STATE"), "{run}");
        // Its synopsis is the command as typed; a positional's variable names the argument.
        assert!(run.contains("slipway run"), "{run}");
        assert!(!run.contains("The default of :"), "{run}");
        assert!(text("slipway-controller.1").contains("SLIPWAY_LOG"));
    }

    #[test]
    fn completions_leave_hidden_options_out() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut visible(&Cli::command()),
            "slipway",
            &mut out,
        );
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("--reviews"), "{script}");
        assert!(!script.contains("--now"), "{script}");
        // The option still works for whoever knows it.
        assert!(
            <Cli as clap::Parser>::try_parse_from([
                "slipway",
                "plan",
                "--base",
                "main",
                "--now",
                "2026-11-26T12:00:00Z"
            ])
            .is_ok()
        );
    }
}
