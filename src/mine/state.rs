//! The two stored facts about a cluster besides its content: what kind of failure it
//! groups and where it is in the improvement loop (DESIGN.md "cluster").

crate::schema::text_enum! {
    /// Infrastructure failures (rate limits, timeouts, auth) are reported but never
    /// targeted: no harness change fixes a provider outage.
    pub enum ClusterKind ("cluster kind") {
        Infra = "infra",
        Capability = "capability",
    }
}

impl ClusterKind {
    pub fn of(infra: bool) -> ClusterKind {
        if infra { ClusterKind::Infra } else { ClusterKind::Capability }
    }
}

crate::schema::text_enum! {
    /// observed → targeted (a run chose it) → fixed (an accepted fix is in the tree) →
    /// regressed (it failed again after the fix).
    #[derive(Default)]
    pub enum ClusterState ("cluster state") {
        #[default]
        Observed = "observed",
        Targeted = "targeted",
        Fixed = "fixed",
        Regressed = "regressed",
    }
}

crate::schema::text_enum! {
    /// Where a failure's "failed" comes from: the trace recorded it (an error, a verdict, a
    /// score), or a rubric judge read a trace that recorded no outcome (`mine --judge` with
    /// `[judge.rubric]`). Judged failures have their own signal prefix, so a cluster is one
    /// or the other, never both.
    pub enum OutcomeSource ("outcome source") {
        Recorded = "recorded",
        Judged = "judged",
    }
}

impl OutcomeSource {
    /// Read from a canonical signature (`kind|signal|…`) or a bare signal.
    pub fn of_signature(signature: &str) -> OutcomeSource {
        let signal = signature.split('|').nth(1).unwrap_or(signature);
        if signal.starts_with(super::judge::RUBRIC_SIGNAL) { OutcomeSource::Judged } else { OutcomeSource::Recorded }
    }
}
