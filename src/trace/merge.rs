//! Joining traces whose records are spread over several files or batches: OTLP spans and
//! the log records that carry their events, Langfuse observations and scores, LangSmith
//! runs posted and patched separately. Traces of one join family with the same id become
//! one trace; steps with the same id are merged field by field (the more complete copy
//! wins, events and scores are concatenated).

use std::collections::HashMap;

use super::formats::Format;
use super::model::{Step, Trace};
use super::outcome;

/// Merge traces of the same join family and id, keeping first-seen order. Outcomes of
/// merged traces are derived again.
pub fn merge_traces(traces: Vec<Trace>) -> Vec<Trace> {
    let mut out: Vec<Trace> = Vec::with_capacity(traces.len());
    let mut index: HashMap<(&'static str, String), usize> = HashMap::new();
    let mut merged_any = vec![];
    for trace in traces {
        let family = Format::from_name(&trace.source.format).and_then(Format::join_family);
        let Some(family) = family else {
            out.push(trace);
            continue;
        };
        match index.get(&(family, trace.id.clone())) {
            Some(&i) => {
                merge_into(&mut out[i], trace);
                merged_any.push(i);
            }
            None => {
                index.insert((family, trace.id.clone()), out.len());
                out.push(trace);
            }
        }
    }
    merged_any.sort_unstable();
    merged_any.dedup();
    for i in merged_any {
        let t = &mut out[i];
        t.steps.sort_by_key(|s| (s.start.unwrap_or(i128::MAX), s.seq));
        for (seq, step) in t.steps.iter_mut().enumerate() {
            step.seq = seq as u32;
        }
        t.usage = Default::default();
        t.cost_usd = None;
        t.fill_totals();
        outcome::derive(t);
    }
    out
}

pub fn merge_into(into: &mut Trace, other: Trace) {
    let mut by_id: HashMap<String, usize> = into.steps.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
    for step in other.steps {
        match by_id.get(&step.id) {
            Some(&i) => merge_step(&mut into.steps[i], step),
            None => {
                by_id.insert(step.id.clone(), into.steps.len());
                into.steps.push(step);
            }
        }
    }
    for d in other.source.dialects {
        if !into.source.dialects.contains(&d) {
            into.source.dialects.push(d);
        }
    }
    into.signals.extend(other.signals);
    into.scores.extend(other.scores);
    into.transcript.extend(other.transcript);
    if into.task.is_none() {
        into.task = other.task;
    }
    for (k, v) in other.attributes {
        into.attributes.entry(k).or_insert(v);
    }
    macro_rules! fill {
        ($($f:ident),*) => { $( if into.$f.is_none() { into.$f = other.$f; } )* };
    }
    fill!(session_id, user_id, name, start, end);
}

fn merge_step(into: &mut Step, other: Step) {
    // The copy with an end time is the finished one (console exporters print spans twice).
    let other_more_complete = into.end.is_none() && other.end.is_some();
    if other_more_complete {
        let events = std::mem::take(&mut into.events);
        let scores = std::mem::take(&mut into.scores);
        let attrs = std::mem::take(&mut into.attributes);
        *into = Step { seq: into.seq, ..other };
        into.events.extend(events);
        into.scores.extend(scores);
        for (k, v) in attrs {
            into.attributes.entry(k).or_insert(v);
        }
        return;
    }
    macro_rules! fill {
        ($($f:ident),*) => { $( if into.$f.is_none() { into.$f = other.$f; } )* };
    }
    fill!(parent_id, name, start, end, error, model, agent, tool_call, tool_result, input, output, cost_usd);
    if into.input_messages.is_empty() {
        into.input_messages = other.input_messages;
    }
    if into.output_messages.is_empty() {
        into.output_messages = other.output_messages;
    }
    if into.usage.is_empty() {
        into.usage = other.usage;
    }
    if other.status == super::model::StepStatus::Error {
        into.status = other.status;
    }
    into.events.extend(other.events);
    into.scores.extend(other.scores);
    for (k, v) in other.attributes {
        into.attributes.entry(k).or_insert(v);
    }
}
