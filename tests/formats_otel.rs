//! Format adapter tests: see tests/fixtures/formats/.
#[allow(unused_imports)]
use crate::common::*;

#[test]
#[ignore]
#[allow(clippy::print_stdout)]
fn dump() {
    let p = std::env::var("DUMP").unwrap();
    let r = autoharness::trace::read_file(std::path::Path::new(&p), &p);
    println!("format={:?} reason={} error={:?} warnings={:?}", r.format, r.reason, r.error, r.warnings);
    for t in &r.traces {
        if std::env::var("FULL").is_ok() {
            println!("{}", serde_json::to_string_pretty(t).unwrap());
            continue;
        }
        println!("TRACE {} name={:?} dialects={:?} session={:?} usage={:?} cost={:?} outcome={:?}", t.id, t.name, t.source.dialects, t.session_id, t.usage, t.cost_usd, t.outcome);
        println!("  task={:?} signals={:?} scores={:?}", t.task.as_ref().map(|v| autoharness::trace::json::clip(&v.to_string(), 100)), t.signals, t.scores);
        for s in &t.steps {
            println!("  {} {} p={:?} {:?} {:?} {:?} agent={:?} in={} out={} tool={:?} res={:?} usage={:?} err={:?} ev={} sc={:?}", s.seq, s.id, s.parent_id, s.kind, s.name, s.status, s.agent,
              s.input_messages.len(), s.output_messages.len(), s.tool_call.as_ref().map(|c| &c.name), s.tool_result.as_ref().map(|r| autoharness::trace::json::clip(&r.content.to_string(), 60)), s.usage, s.error.as_ref().map(|e| (e.source, e.r#type.clone(), e.message.as_deref().map(|m| autoharness::trace::json::clip(m, 80)))), s.events.len(), s.scores);
        }
    }
}
