//! Renderers: terminal tables and trees, JSON documents with a `schema` field, and (later)
//! Markdown, JUnit and HTML. Only this module and `main.rs` write to stdout/stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod eval;
pub mod gate;
pub mod junit;
pub mod mine;
pub mod neutral;
pub mod output;
pub mod run;
pub mod setup;
pub mod traces;

pub use output::{Output, Style};

/// A table with the house style: no borders, bold header when colored.
pub fn table(header: &[&str], color: bool) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_content_arrangement(comfy_table::ContentArrangement::Disabled);
    t.set_header(header.iter().map(|h| comfy_table::Cell::new(output::paint(color, Style::Bold, h))));
    t
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
