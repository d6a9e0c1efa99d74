//! Format adapter tests: see tests/fixtures/formats/.
#[allow(unused_imports)] use crate::common::*;

#[test]
fn dump_transcripts_debug() {
    use autoharness::trace::read_file;
    let root = fixture("formats");
    for rel in std::env::var("DUMP").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let path = root.join(rel);
        let r = read_file(&path, path.to_str().unwrap());
        eprintln!("== {rel}: {:?} {} err={:?} warns={:?}", r.format, r.reason, r.error, r.warnings);
        for t in &r.traces {
            eprintln!("  trace {} outcome={:?} signals={:?} usage={:?} cost={:?} task={:?}", t.id, t.outcome.status, t.signals.iter().map(|s| (&s.kind, s.passed, &s.detail)).collect::<Vec<_>>(), t.usage, t.cost_usd, t.task.as_ref().map(|x| x.to_string().chars().take(60).collect::<String>()));
            for ev in &t.outcome.evidence { eprintln!("    ev {:?}", ev); }
            for s in &t.steps {
                eprintln!("    {} {:?} name={:?} agent={:?} err={:?} range={:?} usage={:?}", s.id, s.kind, s.name, s.agent, s.error.as_ref().map(|e| (e.source, e.r#type.clone(), e.message.as_ref().map(|m| m.chars().take(50).collect::<String>()), e.code.clone())), s.transcript_range, s.usage);
            }
        }
    }
}
