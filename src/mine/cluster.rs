//! Clustering failures by root cause, with identities that survive across runs.
//!
//! 1. Failures with the same canonical signature form one group (exact, O(n)).
//! 2. Each group, largest first, joins an existing cluster that already holds its
//!    signature; otherwise the most similar cluster whose centroid shares a top term with
//!    it (an inverted index over centroid terms, so no all-pairs work) when the cosine
//!    similarity of TF-IDF vectors reaches the join threshold; otherwise it starts a new
//!    cluster whose id is derived from its signature.
//! 3. Centroids are running sums of member vectors, persisted with the clusters, so next
//!    week's failures are judged against the same centroids.
//!
//! Vectors mix the text of the decisive step and its neighbourhood with structural terms
//! (signal, step kind, tool, error type), so two failures of the same tool with the same
//! error read alike even when their prose differs.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::failure::Failure;

/// Terms kept per persisted centroid.
pub const CENTROID_TERMS: usize = 96;
/// How many of a group's strongest terms are used to find candidate clusters.
const PROBE_TERMS: usize = 12;

/// A sparse vector: term → weight.
pub type SparseVec = HashMap<String, f64>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    /// Canonical signature of the group that founded the cluster.
    pub signature: String,
    /// All signatures seen in the cluster (exact matches join without similarity).
    pub signatures: Vec<String>,
    /// Sum of member vectors (top terms only when persisted).
    pub centroid: SparseVec,
    pub members: usize,
    pub infra: bool,
}

impl Cluster {
    fn norm(&self) -> f64 {
        self.centroid.values().map(|v| v * v).sum::<f64>().sqrt()
    }

    /// Keep only the strongest terms (what is persisted).
    pub fn truncate(&mut self) {
        if self.centroid.len() <= CENTROID_TERMS {
            return;
        }
        let mut terms: Vec<(String, f64)> = self.centroid.drain().collect();
        terms.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        terms.truncate(CENTROID_TERMS);
        self.centroid = terms.into_iter().collect();
    }

    /// The strongest terms, for labels.
    pub fn top_terms(&self, n: usize) -> Vec<&str> {
        let mut terms: Vec<(&String, &f64)> = self.centroid.iter().filter(|(t, _)| !t.contains(':')).collect();
        terms.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
        terms.into_iter().take(n).map(|(t, _)| t.as_str()).collect()
    }
}

const STOPWORDS: [&str; 64] = [
    "the", "and", "for", "that", "this", "with", "you", "are", "was", "not", "but", "have", "has", "had", "from",
    "your", "can", "will", "would", "should", "could", "there", "their", "they", "them", "then", "than", "what",
    "when", "which", "who", "how", "all", "any", "our", "out", "into", "been", "were", "its", "also", "just", "one",
    "about", "more", "some", "such", "only", "other", "these", "those", "here", "please", "let", "may", "now", "very",
    "well", "yes", "okay", "sure", "thank", "thanks", "like",
];

/// Words of a text: lowercase alphanumerics of 3..=24 chars, no digits (ids and numbers
/// are incidental), no stopwords.
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| (3..=24).contains(&w.chars().count()))
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
}

/// Term counts of one failure: text words plus weighted structural terms.
pub fn term_counts(f: &Failure) -> HashMap<String, f64> {
    let mut counts: HashMap<String, f64> = HashMap::new();
    for t in tokens(&f.text) {
        *counts.entry(t).or_default() += 1.0;
    }
    for t in tokens(&f.signature.template) {
        *counts.entry(t).or_default() += 1.0;
    }
    let sig = &f.signature;
    let mut structural =
        vec![format!("signal:{}", sig.signal), format!("step:{}", sig.step_kind), format!("kind:{}", sig.kind)];
    if let Some(t) = &sig.tool {
        structural.push(format!("tool:{}", t.to_lowercase()));
    }
    if let Some(e) = &sig.error_type {
        structural.push(format!("error:{}", e.to_lowercase()));
    }
    for s in structural {
        *counts.entry(s).or_default() += 3.0;
    }
    counts
}

/// Document frequencies over a corpus of term-count maps.
#[derive(Debug, Default, Clone)]
pub struct Idf {
    df: HashMap<String, u32>,
    n: u32,
}

impl Idf {
    pub fn add(&mut self, counts: &HashMap<String, f64>) {
        self.n += 1;
        for t in counts.keys() {
            *self.df.entry(t.clone()).or_default() += 1;
        }
    }

    pub fn weight(&self, term: &str) -> f64 {
        let df = self.df.get(term).copied().unwrap_or(0) as f64;
        ((1.0 + self.n as f64) / (1.0 + df)).ln() + 1.0
    }

    /// Sublinear TF-IDF, L2-normalized.
    pub fn vector(&self, counts: &HashMap<String, f64>) -> SparseVec {
        let mut v: SparseVec = counts.iter().map(|(t, c)| (t.clone(), (1.0 + c.ln()) * self.weight(t))).collect();
        let norm = v.values().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            for x in v.values_mut() {
                *x /= norm;
            }
        }
        v
    }
}

pub fn cosine(a: &SparseVec, a_norm: f64, b: &SparseVec, b_norm: f64) -> f64 {
    if a_norm == 0.0 || b_norm == 0.0 {
        return 0.0;
    }
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let dot: f64 = small.iter().filter_map(|(t, x)| large.get(t).map(|y| x * y)).sum();
    dot / (a_norm * b_norm)
}

fn add_into(sum: &mut SparseVec, v: &SparseVec, scale: f64) {
    for (t, x) in v {
        *sum.entry(t.clone()).or_default() += x * scale;
    }
}

/// The result of assigning failures: the cluster id of each failure (same order) and the
/// updated cluster list.
pub struct Assignment {
    pub cluster_of: Vec<String>,
    pub clusters: Vec<Cluster>,
    pub new_clusters: usize,
}

/// Assign `failures` to `existing` clusters or new ones. `idf` should cover the whole
/// corpus (old and new failures); `threshold` is the cosine similarity needed to join.
pub fn assign(failures: &[Failure], existing: Vec<Cluster>, idf: &Idf, threshold: f64) -> Assignment {
    let vectors: Vec<SparseVec> = failures.iter().map(|f| idf.vector(&term_counts(f))).collect();
    // Groups by canonical signature, in first-seen order.
    let mut group_index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, f) in failures.iter().enumerate() {
        let key = f.signature.canonical();
        let g = *group_index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    // Largest groups first: they found the clusters smaller ones join. Ties by key for determinism.
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));

    let mut clusters = existing;
    let mut by_signature: HashMap<String, usize> = HashMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut term_index: HashMap<String, Vec<usize>> = HashMap::new();
    for (ci, c) in clusters.iter().enumerate() {
        for s in &c.signatures {
            by_signature.insert(s.clone(), ci);
        }
        by_id.insert(c.id.clone(), ci);
        index_terms(&mut term_index, c, ci);
    }
    let mut cluster_of = vec![String::new(); failures.len()];
    let mut new_clusters = 0;
    for (key, members) in &groups {
        let mut centroid = SparseVec::new();
        for &m in members {
            add_into(&mut centroid, &vectors[m], 1.0);
        }
        let norm = centroid.values().map(|x| x * x).sum::<f64>().sqrt();
        let target = if let Some(&ci) = by_signature.get(key) {
            Some(ci)
        } else {
            let mut probe: Vec<(&String, &f64)> = centroid.iter().collect();
            probe.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let candidates: HashSet<usize> =
                probe.iter().take(PROBE_TERMS).filter_map(|(t, _)| term_index.get(*t)).flatten().copied().collect();
            let mut best: Option<(f64, usize)> = None;
            let infra = failures[members[0]].infra;
            for ci in candidates {
                let c = &clusters[ci];
                if c.infra != infra {
                    continue; // infrastructure and capability failures never mix
                }
                let sim = cosine(&centroid, norm, &c.centroid, c.norm());
                if sim >= threshold && best.is_none_or(|(b, bi)| sim > b || (sim == b && ci < bi)) {
                    best = Some((sim, ci));
                }
            }
            best.map(|(_, ci)| ci)
        };
        let ci = match target {
            Some(ci) => {
                let c = &mut clusters[ci];
                add_into(&mut c.centroid, &centroid, 1.0);
                c.members += members.len();
                if !c.signatures.contains(key) {
                    c.signatures.push(key.clone());
                }
                ci
            }
            None => {
                let sig = &failures[members[0]].signature;
                let mut id = sig.cluster_id();
                // Two different signatures with the same short hash: extend deterministically.
                let mut salt = 1;
                while by_id.contains_key(&id) {
                    id = super::signature::short_id("k-", &format!("{}#{salt}", sig.canonical()));
                    salt += 1;
                }
                clusters.push(Cluster {
                    id: id.clone(),
                    signature: key.clone(),
                    signatures: vec![key.clone()],
                    centroid,
                    members: members.len(),
                    infra: failures[members[0]].infra,
                });
                new_clusters += 1;
                let ci = clusters.len() - 1;
                by_id.insert(id, ci);
                ci
            }
        };
        by_signature.insert(key.clone(), ci);
        index_terms(&mut term_index, &clusters[ci], ci);
        for &m in members {
            cluster_of[m] = clusters[ci].id.clone();
        }
    }
    Assignment { cluster_of, clusters, new_clusters }
}

fn index_terms(index: &mut HashMap<String, Vec<usize>>, c: &Cluster, ci: usize) {
    let mut terms: Vec<(&String, &f64)> = c.centroid.iter().collect();
    terms.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    for (t, _) in terms.into_iter().take(CENTROID_TERMS) {
        let list = index.entry(t.clone()).or_default();
        if !list.contains(&ci) {
            list.push(ci);
        }
    }
}
