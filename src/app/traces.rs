//! `autoharness traces show|ls|formats`.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::exit::{self, ExitCode};
use crate::report::Output;
use crate::report::traces::{ls_doc, render_ls, render_show, show_doc};
use crate::store::{Store, runtime};
use crate::trace::formats::Format;
use crate::trace::read_file;
use crate::trace::scan::{FeedbackOptions, scan_with};

pub fn show(settings: &Settings, out: &Output, file: &Path, all: bool) -> anyhow::Result<ExitCode> {
    let meta = std::fs::metadata(file).map_err(|e| {
        exit::hinted(
            crate::paths::describe_io(file, &e),
            "pass a trace file; `autoharness traces ls DIR` lists the files of a folder",
        )
    })?;
    if let Some(kind) = crate::paths::special_kind(meta.file_type()) {
        return Err(exit::hinted(
            format!("`{}` {}", file.display(), crate::paths::special_reason(kind)),
            "copy the data into a regular file and pass that",
        ));
    }
    if meta.is_dir() {
        return Err(exit::hinted(
            format!("`{}` is a folder", file.display()),
            format!("use `autoharness traces ls {}` for folders", file.display()),
        ));
    }
    let mut report = read_file(file, &file.display().to_string());
    // The outcome `mine` would use: feedback beside the file joined (docs/outcomes.md).
    let joined = crate::trace::scan::join_beside(file, &mut report, &settings.config.feedback);
    if !joined.is_empty() && !out.json {
        out.note(&format!("feedback joined from {}", joined.join(", ")));
    }
    let doc = show_doc(&report);
    if out.json {
        out.print_json(&doc)?;
    } else {
        out.print(&render_show(out, &doc, all));
    }
    Ok(exit::SUCCESS)
}

pub fn ls(settings: &Settings, out: &Output, paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let bar = out.progress(0, "reading");
    let counted = std::sync::atomic::AtomicU64::new(0);
    let tick = |_: &str| {
        let n = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        bar.set_position(n);
    };
    bar.set_length(count_files(paths));
    let feedback = FeedbackOptions { files: vec![], config: settings.config.feedback.clone() };
    let result = scan_with(paths, &feedback, settings.jobs, |_, _, _| false, |_| None::<()>, &tick);
    bar.finish_and_clear();
    for (path, e) in &result.walk_errors {
        out.error(&anyhow::anyhow!("`{}`: {e}", path.display()));
    }
    for f in &result.files {
        if let Some(e) = &f.report.error {
            out.warn(&format!("{}: {e}", f.report.path));
        }
        for w in &f.report.warnings {
            if out.verbose > 0 {
                out.warn(&format!("{}: {}: {}", f.report.path, w.location, w.message));
            }
        }
    }
    record(settings, &result.files)?;
    let doc = ls_doc(&result.files);
    if out.json {
        out.print_json(&doc)?;
    } else {
        out.print(&render_ls(out, &doc));
    }
    Ok(if result.walk_errors.is_empty() { exit::SUCCESS } else { exit::ERROR })
}

fn count_files(paths: &[PathBuf]) -> u64 {
    crate::trace::walk::walk(paths).0.len() as u64
}

/// Record scanned files and their trace summaries in the store.
pub fn record<T>(settings: &Settings, files: &[crate::trace::scan::ScannedFile<T>]) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let store = Store::open_settings(settings).await?;
        let rows: Vec<crate::store::traces::FileRow<'_>> = files
            .iter()
            .filter(|f| !f.skipped)
            .map(|f| crate::store::traces::FileRow {
                key: &f.key,
                mtime_ns: f.mtime_ns,
                report: &f.report,
                traces: &f.summaries,
            })
            .collect();
        store.record_files(&rows).await?;
        store.close().await;
        anyhow::Ok(())
    })
}

pub fn formats(out: &Output) -> anyhow::Result<ExitCode> {
    #[derive(serde::Serialize)]
    struct Doc {
        schema: &'static str,
        formats: Vec<&'static str>,
    }
    let names: Vec<&'static str> = Format::ALL.iter().map(|f| f.name()).collect();
    if out.json {
        out.print_json(&Doc { schema: crate::schema::FORMATS, formats: names })?;
    } else {
        let mut s = String::from("Formats are detected from content (first records), not from extensions.\n");
        s.push_str("gzip and zstd files are read transparently.\n\n");
        for n in names {
            s.push_str(n);
            s.push('\n');
        }
        out.print(&s);
    }
    Ok(exit::SUCCESS)
}
