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
