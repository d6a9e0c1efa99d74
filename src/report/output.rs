//! The terminal: colors decided once per stream, errors rendered one way, progress bars
//! only where a person watches. Data goes to stdout, everything else to stderr.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Resolve colors: `--color` > `NO_COLOR` > `FORCE_COLOR` > is the stream a terminal.
pub fn resolve_color(choice: ColorChoice, no_color: bool, force_color: bool, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if no_color => false,
        ColorChoice::Auto if force_color => true,
        ColorChoice::Auto => is_terminal,
    }
}

/// Progress bars show only on a terminal, outside CI, and when not quiet.
pub fn show_progress(stderr_is_terminal: bool, is_ci: bool, quiet: bool) -> bool {
    stderr_is_terminal && !is_ci && !quiet
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

#[derive(Debug, Clone)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub color_stdout: bool,
    pub color_stderr: bool,
    pub progress: bool,
}

/// ANSI styles, applied only when the stream has colors.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    Bold,
    Dim,
    Red,
    Green,
    Yellow,
    Cyan,
    Magenta,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Red => "31",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Cyan => "36",
            Style::Magenta => "35",
        }
    }
}

pub fn paint(on: bool, style: Style, text: &str) -> String {
    if on && !text.is_empty() { format!("\x1b[{}m{text}\x1b[0m", style.code()) } else { text.to_string() }
}

fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// stderr for logs: a log line can quote trace or model text, so it is neutralised like
/// everything else printed (the formatter writes each event in one call).
struct SafeStderr {
    colors: bool,
}

impl Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().lock().write_all(super::neutral::terminal_keeping_colors(&text, self.colors).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl Output {
    pub fn new(choice: ColorChoice, json: bool, quiet: bool, verbose: u8) -> Output {
        let no_color = env_set("NO_COLOR");
        let force = env_set("FORCE_COLOR");
        let stderr_tty = std::io::stderr().is_terminal();
        Output {
            json,
            quiet,
            verbose,
            color_stdout: resolve_color(choice, no_color, force, std::io::stdout().is_terminal()),
            color_stderr: resolve_color(choice, no_color, force, stderr_tty),
            progress: show_progress(stderr_tty, env_set("CI"), quiet),
        }
    }

    /// Plain output for tests: no colors, no progress.
    pub fn plain(json: bool) -> Output {
        Output { json, quiet: false, verbose: 0, color_stdout: false, color_stderr: false, progress: false }
    }

    pub fn paint(&self, style: Style, text: &str) -> String {
        paint(self.color_stdout, style, text)
    }

    /// Write a human document to stdout: control and escape sequences made visible
    /// (`neutral::terminal`), only autoharness's own colors kept. A closed pipe (`| head`)
    /// ends the process quietly.
    pub fn print(&self, text: &str) {
        write_stdout(&super::neutral::terminal_keeping_colors(text, self.color_stdout));
    }

    pub fn print_json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        // JSON escapes control characters itself, and its strings must stay exact.
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        write_stdout(&text);
        Ok(())
    }

    fn eprint(&self, text: &str) {
        let text = super::neutral::terminal_keeping_colors(text, self.color_stderr);
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// `error: …`, then the causes, then a hint when there is one.
    pub fn error(&self, e: &anyhow::Error) {
        let c = self.color_stderr;
        self.eprint(&format!("{} {e}", paint(c, Style::Red, &paint(c, Style::Bold, "error:"))));
        for cause in e.chain().skip(1) {
            self.eprint(&format!("  {} {cause}", paint(c, Style::Dim, "caused by:")));
        }
        if let Some(h) = e.downcast_ref::<crate::exit::Hinted>() {
            self.eprint(&format!("  {} {}", paint(c, Style::Cyan, "hint:"), h.hint));
        }
    }

    pub fn warn(&self, message: &str) {
        if !self.quiet {
            let c = self.color_stderr;
            self.eprint(&format!("{} {message}", paint(c, Style::Yellow, &paint(c, Style::Bold, "warning:"))));
        }
    }

    /// A one-line note on stderr (hidden by -q).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            self.eprint(message);
        }
    }

    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    }
}

/// Logs (tracing) go to stderr: warnings by default, more with -v, nothing with -q.
pub fn init_logging(out: &Output) {
    let level = match (out.quiet, out.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTOHARNESS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("autoharness={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer({
            let colors = out.color_stderr;
            move || SafeStderr { colors }
        })
        .with_ansi(out.color_stderr)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_precedence() {
        assert!(resolve_color(ColorChoice::Always, true, false, false));
        assert!(!resolve_color(ColorChoice::Never, false, true, true));
        assert!(!resolve_color(ColorChoice::Auto, true, true, true));
        assert!(resolve_color(ColorChoice::Auto, false, true, false));
        assert!(resolve_color(ColorChoice::Auto, false, false, true));
        assert!(!resolve_color(ColorChoice::Auto, false, false, false));
    }

    #[test]
    fn progress_only_for_people() {
        assert!(show_progress(true, false, false));
        assert!(!show_progress(true, true, false));
        assert!(!show_progress(false, false, false));
        assert!(!show_progress(true, false, true));
    }
}
