//! The dependency rule of ARCHITECTURE.md, enforced: every `crate::<module>` a top-level
//! module of `src/` uses (outside its test module) must be allowed by the matrix between
//! `<!-- deps:begin` and `<!-- deps:end -->`, every module must be in the matrix, and the
//! matrix itself must have no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `module → modules it may use`, read from ARCHITECTURE.md.
fn allowed(architecture: &str) -> BTreeMap<String, BTreeSet<String>> {
    let start = architecture.find("<!-- deps:begin").expect("ARCHITECTURE.md has a deps:begin marker");
    let end = architecture.find("<!-- deps:end -->").expect("ARCHITECTURE.md has a deps:end marker");
    let mut matrix = BTreeMap::new();
    for line in architecture[start..end].lines().skip(1) {
        let Some((module, uses)) = line.split_once(':') else { continue };
        if module.contains(' ') || module.starts_with('`') {
            continue;
        }
        matrix.insert(module.trim().to_string(), uses.split_whitespace().map(str::to_string).collect());
    }
    matrix
}

/// The top-level modules of `src/` (files and folders, without `main` and `lib`).
fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let name = name.strip_suffix(".rs").map(str::to_string).unwrap_or(name);
            (name != "main" && name != "lib").then_some(name)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(from, to) → a file that makes the edge`, from `crate::<to>` in non-test code. Test
/// modules come last in a file (clippy's `items_after_test_module`), so the text is cut
/// at the first one.
fn edges(src: &Path, modules: &BTreeSet<String>) -> BTreeMap<(String, String), String> {
    let re = regex::Regex::new(r"crate::([a-z_][a-z0-9_]*)").unwrap();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        let from = first.strip_suffix(".rs").map(str::to_string).unwrap_or(first);
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code = match text.find("#[cfg(test)]\nmod ") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        for cap in re.captures_iter(code) {
            let to = cap[1].to_string();
            if to != from && modules.contains(&to) {
                found.entry((from.clone(), to)).or_insert_with(|| rel.display().to_string());
            }
        }
    }
    found
}

/// A cycle in `graph`, if there is one (as the list of modules on it).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|n| n == node).unwrap_or(0);
                let mut c = path[at..].to_vec();
                c.push(node.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    graph.keys().find_map(|n| visit(n, graph, &mut state, &mut Vec::new()))
}

fn check(architecture: &str, src: &Path) -> Vec<String> {
    let matrix = allowed(architecture);
    let modules = modules(src);
    let mut problems = Vec::new();
    for m in &modules {
        if !matrix.contains_key(m) {
            problems.push(format!("`src/{m}` is not in ARCHITECTURE.md's dependency matrix: add a line for it"));
        }
    }
    for ((from, to), file) in edges(src, &modules) {
        if matrix.get(&from).is_some_and(|uses| !uses.contains(&to)) {
            problems.push(format!(
                "src/{file}: `{from}` uses `crate::{to}`, which ARCHITECTURE.md's dependency matrix does not allow"
            ));
        }
    }
    if let Some(c) = cycle(&matrix) {
        problems.push(format!("the dependency matrix has a cycle: {}", c.join(" → ")));
    }
    problems
}

#[test]
fn top_level_modules_follow_the_dependency_matrix() {
    let architecture = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap();
    let problems = check(&architecture, &repo().join("src"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check can fail: an upward edge, a module missing from the matrix, and a cycle in
/// the matrix are each reported.
#[test]
fn the_tidy_check_reports_forbidden_edges_and_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("low")).unwrap();
    std::fs::write(src.join("low/mod.rs"), "use crate::high::Thing;\n#[cfg(test)]\nmod tests { use crate::extra; }\n")
        .unwrap();
    std::fs::write(src.join("high.rs"), "use crate::low::Other;\n").unwrap();
    std::fs::write(src.join("extra.rs"), "").unwrap();
    let md = "<!-- deps:begin -->\n```text\nlow:\nhigh: low\n```\n<!-- deps:end -->\n";
    let problems = check(md, &src);
    assert!(problems.iter().any(|p| p.contains("`low` uses `crate::high`")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("`src/extra` is not in")), "{problems:?}");
    assert!(!problems.iter().any(|p| p.contains("crate::extra")), "test modules are not counted: {problems:?}");
    let cyclic = "<!-- deps:begin -->\n```text\nlow: high\nhigh: low\nextra:\n```\n<!-- deps:end -->\n";
    assert!(check(cyclic, &src).iter().any(|p| p.contains("has a cycle")));
}

/// docs/json.md documents exactly the `--json` documents the binary writes.
#[test]
fn json_docs_list_exactly_the_json_outputs() {
    let doc = std::fs::read_to_string(repo().join("docs/json.md")).unwrap();
    let re = regex::Regex::new(r"autoharness\.[a-z_-]+/v[0-9]+").unwrap();
    let documented: BTreeSet<&str> =
        re.find_iter(&doc).map(|m| m.as_str()).filter(|s| *s != autoharness::schema::CASE).collect();
    let written: BTreeSet<&str> = autoharness::schema::JSON_OUTPUTS.iter().copied().collect();
    let missing: Vec<_> = written.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&written).collect();
    assert!(missing.is_empty(), "written but not in docs/json.md: {missing:?}");
    assert!(stale.is_empty(), "in docs/json.md but no command writes them: {stale:?}");
}

/// The schema a migrations folder builds, version by version: each file's name, and the
/// tables' columns and the indexes its statements make.
fn schema_of(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| l.split("--").next().unwrap_or("").to_string() + "\n")
            .collect();
        let mut items = BTreeSet::new();
        for stmt in text.split(';') {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            match words.as_slice() {
                ["CREATE", "TABLE", table, ..] => {
                    let table = table.trim_end_matches('(');
                    let body = &stmt[stmt.find('(').unwrap() + 1..stmt.rfind(')').unwrap()];
                    let mut depth = 0;
                    let mut part = String::new();
                    let mut parts = Vec::new();
                    for ch in body.chars() {
                        match ch {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            ',' if depth == 0 => {
                                parts.push(std::mem::take(&mut part));
                                continue;
                            }
                            _ => {}
                        }
                        part.push(ch);
                    }
                    parts.push(part);
                    for p in parts {
                        let first = p.split_whitespace().next().unwrap_or("");
                        if ["UNIQUE", "PRIMARY", "FOREIGN", "CHECK", "CONSTRAINT", ""].contains(&first) {
                            items.insert(format!("{table}: {}", p.split_whitespace().collect::<Vec<_>>().join(" ")));
                        } else {
                            items.insert(format!("{table}.{first}"));
                        }
                    }
                }
                ["ALTER", "TABLE", table, "ADD", "COLUMN", column, ..] => {
                    items.insert(format!("{table}.{column}"));
                }
                ["CREATE", "INDEX", name, "ON", table, ..] => {
                    items.insert(format!("index {name} on {table}"));
                }
                _ => {}
            }
        }
        out.insert(path.file_name().unwrap().to_string_lossy().to_string(), items);
    }
    out
}

/// SQLite and Postgres stores are migrated from two folders; they must build the same
/// tables, columns, keys and indexes at every version, or a team's shared store and a
/// laptop's file would hold different things.
#[test]
fn both_migration_folders_build_the_same_schema_at_every_version() {
    let sqlite = schema_of(&repo().join("migrations"));
    let postgres = schema_of(&repo().join("migrations/postgres"));
    assert!(sqlite.len() >= 9, "{sqlite:?}");
    let names = |m: &BTreeMap<String, BTreeSet<String>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&postgres), names(&sqlite), "every migration needs its Postgres twin, with the same file name");
    for (file, items) in &sqlite {
        assert_eq!(&postgres[file], items, "migrations/postgres/{file} differs from migrations/{file}");
    }
}
