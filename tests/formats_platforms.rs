//! Format adapter tests for the platform exports: LangSmith, Langfuse, OpenAI Agents SDK.
#[allow(unused_imports)]
use crate::common::*;

#[test]
#[ignore]
fn dump() {
    let p = std::env::var("DUMP").unwrap();
    let r = autoharness::trace::read_file(std::path::Path::new(&p), &p);
    eprintln!("format {:?} reason {} error {:?} warnings {:?}", r.format, r.reason, r.error, r.warnings);
    for t in &r.traces {
        if std::env::var("FULL").is_ok() {
            eprintln!("{}", serde_json::to_string_pretty(t).unwrap());
            continue;
        }
        eprintln!("TRACE {} name={:?} session={:?} usage={:?} cost={:?} outcome={:?} scores={:?} signals={:?} task={:?} dialects={:?}", t.id, t.name, t.session_id, t.usage, t.cost_usd, t.outcome, t.scores.iter().map(|s| (&s.name, s.value, &s.label)).collect::<Vec<_>>(), t.signals, t.task.as_ref().map(|v| v.to_string().chars().take(80).collect::<String>()), t.source.dialects);
        for s in &t.steps {
            eprintln!("  {} {} p={:?} {:?} {:?} {:?} err={:?} model={:?} agent={:?} tool={:?} res={:?} in={} out={} usage={:?} cost={:?} scores={}",
                s.seq, s.id, s.parent_id, s.kind, s.name, s.status, s.error, s.model.as_ref().map(|m| m.name()), s.agent,
                s.tool_call.as_ref().map(|c| format!("{}({})", c.name, c.arguments)), s.tool_result.as_ref().map(|r| r.content.to_string().chars().take(60).collect::<String>()),
                s.input_messages.iter().map(|m| format!("{}:{}", m.role, m.joined_text().chars().take(40).collect::<String>())).collect::<Vec<_>>().join("|"),
                s.output_messages.iter().map(|m| format!("{}:{}", m.role, m.joined_text().chars().take(60).collect::<String>())).collect::<Vec<_>>().join("|"),
                s.usage, s.cost_usd, s.scores.len());
        }
    }
}
