//! The built-in offline proposer: searches the manifest's `[[knobs]]`. Candidates are
//! single knob changes first, then pairs of the most promising ones; which of them are
//! worth a gate is decided by screening them on the target cluster's train cases (see
//! `run`), so the search spends cheap trials before expensive gates.

use std::path::Path;

use serde::Serialize;

use super::edits::{current_value, file_diff, set_value};
use crate::harness::manifest::{Knob, Manifest};

/// One knob set to one value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnobChange {
    pub file: String,
    pub key: String,
    pub from: Option<toml::Value>,
    pub to: toml::Value,
}

/// A knob candidate: its changes and the diff that makes them.
#[derive(Debug, Clone, Serialize)]
pub struct KnobCandidate {
    pub changes: Vec<KnobChange>,
    pub diff: String,
    pub description: String,
}

fn show(v: &Option<toml::Value>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "unset".into())
}

/// Every single-knob change away from the current values under `root`.
pub fn singles(manifest: &Manifest, root: &Path) -> Vec<KnobChange> {
    let mut out = Vec::new();
    for Knob { file, key, values } in &manifest.knobs {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        let from = current_value(file, &text, key);
        for v in values {
            if from.as_ref() != Some(v) {
                out.push(KnobChange { file: file.clone(), key: key.clone(), from: from.clone(), to: v.clone() });
            }
        }
    }
    out
}

/// The candidate applying `changes` to the files under `root`.
pub fn candidate(root: &Path, changes: &[KnobChange]) -> Result<KnobCandidate, String> {
    let mut files: Vec<(String, String, String)> = Vec::new();
    for c in changes {
        let idx = match files.iter().position(|(f, _, _)| f == &c.file) {
            Some(i) => i,
            None => {
                let text = std::fs::read_to_string(root.join(&c.file))
                    .map_err(|e| format!("cannot read knob file `{}`: {e}", c.file))?;
                files.push((c.file.clone(), text.clone(), text));
                files.len() - 1
            }
        };
        let new = set_value(&c.file, &files[idx].2, &c.key, &c.to)?;
        files[idx].2 = new;
    }
    let diff: String = files.iter().map(|(f, old, new)| file_diff(f, old, new)).collect();
    let description = changes
        .iter()
        .map(|c| format!("{} {}: {} → {}", c.file, c.key, show(&c.from), c.to))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(KnobCandidate { changes: changes.to_vec(), diff, description })
}

/// Pairs of changes to different knobs, from the given (best-first) singles.
pub fn pairs(best: &[KnobChange], limit: usize) -> Vec<Vec<KnobChange>> {
    let mut out = Vec::new();
    for (i, a) in best.iter().enumerate() {
        for b in &best[i + 1..] {
            if (a.file.as_str(), a.key.as_str()) != (b.file.as_str(), b.key.as_str()) {
                out.push(vec![a.clone(), b.clone()]);
                if out.len() >= limit {
                    return out;
                }
            }
        }
    }
    out
}
