//! Progress of `slipway run`: on a terminal, a live line with a spinner, the current activity and
//! how long it has been going (evaluations and rollout pauses can take minutes), with every
//! finished step printed above it; otherwise plain lines, one per step, for logs.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether output may be coloured: a terminal, and no `NO_COLOR` (https://no-color.org).
pub fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Where progress goes.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A live line when `tty`, plain lines otherwise.
    pub fn new(tty: bool) -> Progress {
        if !tty {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let template = if colour(true) {
            "{spinner:.cyan} {msg} {elapsed:.dim}"
        } else {
            "{spinner} {msg} {elapsed}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    /// A step happened (and is now the current activity).
    pub fn step(&self, line: &str) {
        match &self.bar {
            Some(bar) => {
                bar.println(format!("  {line}"));
                bar.set_message(line.to_string());
                bar.reset_elapsed();
            }
            None => eprintln!("{line}"),
        }
    }

    /// Waiting, e.g. for a rollout pause: shown live on a terminal only.
    pub fn waiting(&self, what: &str) {
        if let Some(bar) = &self.bar
            && bar.message() != what
        {
            bar.set_message(what.to_string());
            bar.reset_elapsed();
        }
    }

    /// Prints a line above the live one (errors, notices) without a step.
    pub fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the live line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
