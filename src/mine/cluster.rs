//! Clustering failures by root cause, with identities that survive across runs.
//!
//! 1. Failures with the same canonical signature form one group (exact, O(n)).
//! 2. Each group, largest first, joins an existing cluster that already holds its
//!    signature; otherwise the most similar cluster whose centroid shares a top term with
//!    it (an inverted index over centroid terms, so no all-pairs work) when the cosine
//!    similarity of TF-IDF vectors reaches the join threshold; otherwise it starts a new
//!    cluster whose id is derived from its signature. With many clusters (a long tail of
//!    dissimilar failures of one kind), the candidates are bounded: `MAX_CANDIDATES` of
//!    them, those sharing the most of the group's probe weight, from at most
//!    `MAX_POSTINGS` clusters per probe term, so the cost per group does not grow with the
//!    cluster count.
//! 3. Centroids are running sums of member vectors, persisted with the clusters, so next
//!    week's failures are judged against the same centroids.
//!
//! Vectors mix the text of the decisive step and its neighbourhood with structural terms
//! (signal, step kind, tool, error type), so two failures of the same tool with the same
//! error read alike even when their prose differs.
//!
//! `assign` works on interned terms (u32 ids) with a fast hasher: a failure's vector is
//! built only when its group is processed (never all at once), a group's sum lives in a
//! dense scratch array, cluster norms are cached, and each cluster's top terms are updated
//! from the previous top terms and the terms just added (weights only grow) instead of
//! sorting the whole centroid on every join. `benches/cluster.rs` holds it to near-linear
//! time up to 100,000 failures; the tests below hold it to the plain implementation.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::failure::Failure;
use super::signature::Signature;

/// Terms kept per persisted centroid.
pub const CENTROID_TERMS: usize = 96;
/// How many of a group's strongest terms are used to find candidate clusters.
const PROBE_TERMS: usize = 12;
/// At most this many candidate clusters are compared with a group: those sharing the most
/// of its probe terms' weight, then the largest. Fewer clusters than this (every real
/// dataset so far) and the comparison is exhaustive over the index, as it always was.
const MAX_CANDIDATES: usize = 128;
/// At most this many clusters are read from one probe term's posting list (the oldest):
/// a term that thousands of clusters share finds no particular one.
const MAX_POSTINGS: usize = 1024;

/// A sparse vector: term → weight.
pub type SparseVec = HashMap<String, f64>;

/// The Fx hash (rustc's): a multiply and a rotate per 8 bytes. The keys here are words of
/// traces on the user's own machine, so there is no one to mount a collision attack.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// Term counts of one failure.
pub type TermCounts = HashMap<String, f64, FxBuildHasher>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    /// Canonical signature of the group that founded the cluster.
    pub signature: String,
    /// All signatures seen in the cluster (exact matches join without similarity).
    pub signatures: Vec<String>,
    /// Sum of member vectors: its `CENTROID_TERMS` strongest terms once persisted or
    /// returned by `assign`.
    pub centroid: SparseVec,
    pub members: usize,
    pub infra: bool,
}

impl Cluster {
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

fn is_stopword(w: &str) -> bool {
    /// A word of up to 8 bytes as one number (stopwords are 3 to 6 ASCII letters).
    fn packed(w: &[u8]) -> Option<u64> {
        (w.len() <= 8).then(|| w.iter().rev().fold(0u64, |key, &b| (key << 8) | u64::from(b)))
    }
    static SET: OnceLock<Vec<u64>> = OnceLock::new();
    let set = SET.get_or_init(|| {
        let mut set: Vec<u64> = STOPWORDS.iter().filter_map(|w| packed(w.as_bytes())).collect();
        set.sort_unstable();
        set
    });
    packed(w.as_bytes()).is_some_and(|key| set.binary_search(&key).is_ok())
}

/// Words of a text: lowercase alphanumerics of 3..=24 chars, no digits (ids and numbers
/// are incidental), no stopwords.
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| (3..=24).contains(&w.chars().count()))
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .filter(|w| !is_stopword(w))
}

/// The words `tokens` yields, without an allocation per word: `f` sees each word, lowercased
/// in a reused buffer when it has capitals. ASCII is scanned byte by byte; other characters
/// are decoded and split as `tokens` splits them.
fn for_each_token(text: &str, mut f: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut lower = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let (mut ascii, mut digit, mut upper) = (true, false, false);
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_lowercase() || b == b'_' {
                i += 1;
            } else if b.is_ascii_uppercase() {
                upper = true;
                i += 1;
            } else if b.is_ascii_digit() {
                digit = true;
                i += 1;
            } else if b < 0x80 {
                break;
            } else {
                match text[i..].chars().next() {
                    Some(c) if c.is_alphanumeric() => {
                        ascii = false;
                        i += c.len_utf8();
                    }
                    _ => break,
                }
            }
        }
        if i == start {
            // A separator: one ASCII byte or one other character.
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let w = &text[start..i];
        let chars = if ascii { w.len() } else { w.chars().count() };
        if digit || !(3..=24).contains(&chars) {
            continue;
        }
        let word = if !ascii {
            lower = w.to_lowercase();
            lower.as_str()
        } else if upper {
            lower.clear();
            lower.extend(w.bytes().map(|b| char::from(b.to_ascii_lowercase())));
            lower.as_str()
        } else {
            w
        };
        if !is_stopword(word) {
            f(word);
        }
    }
}

/// The structural terms of a signature (each counts 3): signal, step kind, kind, tool, error type.
fn structural_terms(sig: &Signature, buf: &mut String, mut f: impl FnMut(&str)) {
    for (prefix, value, lower) in [
        ("signal", Some(sig.signal.as_str()), false),
        ("step", Some(sig.step_kind.as_str()), false),
        ("kind", Some(sig.kind.as_str()), false),
        ("tool", sig.tool.as_deref(), true),
        ("error", sig.error_type.as_deref(), true),
    ] {
        let Some(value) = value else { continue };
        buf.clear();
        if lower {
            let _ = write!(buf, "{prefix}:{}", value.to_lowercase());
        } else {
            let _ = write!(buf, "{prefix}:{value}");
        }
        f(buf.as_str());
    }
}

/// Term counts of one failure: text words plus weighted structural terms.
pub fn term_counts(f: &Failure) -> TermCounts {
    let mut counts = TermCounts::default();
    let mut add = |t: &str, by: f64| match counts.get_mut(t) {
        Some(c) => *c += by,
        None => {
            counts.insert(t.to_owned(), by);
        }
    };
    for_each_token(&f.text, |t| add(t, 1.0));
    for_each_token(&f.signature.template, |t| add(t, 1.0));
    structural_terms(&f.signature, &mut String::new(), |t| add(t, 3.0));
    counts
}

/// Document frequencies over a corpus of term-count maps.
#[derive(Debug, Default, Clone)]
pub struct Idf {
    df: HashMap<String, DocFreq, FxBuildHasher>,
    n: u32,
}

#[derive(Debug, Clone, Copy)]
struct DocFreq {
    docs: u32,
    /// The last document counted (so a term counts once per document).
    last: u32,
}

impl Idf {
    pub fn add<S>(&mut self, counts: &HashMap<String, f64, S>) {
        self.n += 1;
        for t in counts.keys() {
            self.count(t);
        }
    }

    /// The same as `add(&term_counts(f))`, without building the counts.
    pub fn add_failure(&mut self, f: &Failure) {
        self.n += 1;
        let mut count = |t: &str| self.count(t);
        for_each_token(&f.text, &mut count);
        for_each_token(&f.signature.template, &mut count);
        structural_terms(&f.signature, &mut String::new(), &mut count);
    }

    fn count(&mut self, term: &str) {
        let doc = self.n;
        match self.df.get_mut(term) {
            Some(d) if d.last == doc => {}
            Some(d) => {
                d.docs += 1;
                d.last = doc;
            }
            None => {
                self.df.insert(term.to_owned(), DocFreq { docs: 1, last: doc });
            }
        }
    }

    pub fn weight(&self, term: &str) -> f64 {
        let df = self.df.get(term).map_or(0, |d| d.docs) as f64;
        ((1.0 + self.n as f64) / (1.0 + df)).ln() + 1.0
    }

    /// Sublinear TF-IDF, L2-normalized.
    pub fn vector<S>(&self, counts: &HashMap<String, f64, S>) -> SparseVec {
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

/// The result of assigning failures: the cluster id of each failure (same order) and the
/// updated cluster list.
pub struct Assignment {
    pub cluster_of: Vec<String>,
    pub clusters: Vec<Cluster>,
    pub new_clusters: usize,
}

/// Terms of one `assign` call, interned, with their IDF weights.
struct Vocab<'a> {
    idf: &'a Idf,
    ids: HashMap<Rc<str>, u32, FxBuildHasher>,
    terms: Vec<Rc<str>>,
    weights: Vec<f64>,
}

impl<'a> Vocab<'a> {
    fn new(idf: &'a Idf) -> Vocab<'a> {
        Vocab { idf, ids: HashMap::default(), terms: Vec::new(), weights: Vec::new() }
    }

    fn intern(&mut self, term: &str) -> u32 {
        if let Some(&id) = self.ids.get(term) {
            return id;
        }
        let id = self.terms.len() as u32;
        let rc: Rc<str> = Rc::from(term);
        self.ids.insert(rc.clone(), id);
        self.terms.push(rc);
        self.weights.push(self.idf.weight(term));
        id
    }

    fn term(&self, id: u32) -> &str {
        &self.terms[id as usize]
    }

    /// The strongest `n` of `ids` by weight, ties by term (the order `Cluster::truncate`
    /// uses), in no particular order.
    fn top(&self, mut ids: Vec<u32>, n: usize, weight: impl Fn(u32) -> f64) -> Vec<u32> {
        if ids.len() > n && n > 0 {
            ids.select_nth_unstable_by(n - 1, |&a, &b| {
                weight(b).total_cmp(&weight(a)).then_with(|| self.term(a).cmp(self.term(b)))
            });
            ids.truncate(n);
        }
        ids
    }
}

/// Sublinear TF-IDF vectors of failures, built one at a time into reused buffers.
#[derive(Default)]
struct Vectorizer {
    counts: Vec<f64>,
    touched: Vec<u32>,
    buf: String,
}

impl Vectorizer {
    /// The L2-normalized vector of `f` (what `Idf::vector(&term_counts(f))` gives) into `out`.
    fn vector(&mut self, vocab: &mut Vocab, f: &Failure, out: &mut Vec<(u32, f64)>) {
        let Vectorizer { counts, touched, buf } = self;
        touched.clear();
        let mut add = |id: u32, by: f64| {
            let i = id as usize;
            if i >= counts.len() {
                counts.resize(i + 1, 0.0);
            }
            if counts[i] == 0.0 {
                touched.push(id);
            }
            counts[i] += by;
        };
        for_each_token(&f.text, |t| add(vocab.intern(t), 1.0));
        for_each_token(&f.signature.template, |t| add(vocab.intern(t), 1.0));
        let mut structural = Vec::with_capacity(5);
        structural_terms(&f.signature, buf, |t| structural.push(vocab.intern(t)));
        for id in structural {
            add(id, 3.0);
        }
        out.clear();
        for &id in touched.iter() {
            let c = std::mem::take(&mut counts[id as usize]);
            out.push((id, (1.0 + c.ln()) * vocab.weights[id as usize]));
        }
        let norm = out.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            for (_, x) in out.iter_mut() {
                *x /= norm;
            }
        }
    }
}

/// The sum of a group's vectors: dense by term id, with the list of terms present.
#[derive(Default)]
struct GroupSum {
    sum: Vec<f64>,
    present: Vec<bool>,
    terms: Vec<u32>,
}

impl GroupSum {
    fn clear(&mut self) {
        for &t in &self.terms {
            self.sum[t as usize] = 0.0;
            self.present[t as usize] = false;
        }
        self.terms.clear();
    }

    fn add(&mut self, id: u32, x: f64) {
        let i = id as usize;
        if i >= self.sum.len() {
            self.sum.resize(i + 1, 0.0);
            self.present.resize(i + 1, false);
        }
        if !self.present[i] {
            self.present[i] = true;
            self.terms.push(id);
        }
        self.sum[i] += x;
    }

    fn get(&self, id: u32) -> Option<f64> {
        self.present.get(id as usize).copied().unwrap_or(false).then(|| self.sum[id as usize])
    }
}

/// A cluster's centroid during `assign`, by term id, with its norm and its current top terms.
struct LiveCentroid {
    weights: HashMap<u32, f64, FxBuildHasher>,
    /// The sum of squared weights, kept up to date as weights change.
    sum_sq: f64,
    top: Vec<u32>,
    changed: bool,
    /// Its failures were found by a rubric judge (`OutcomeSource::Judged`): only judged
    /// failures may join it, and it joins no recorded ones.
    judged: bool,
}

impl LiveCentroid {
    fn new(weights: HashMap<u32, f64, FxBuildHasher>, top: Vec<u32>, changed: bool, signature: &str) -> LiveCentroid {
        let sum_sq = weights.values().map(|v| v * v).sum::<f64>();
        let judged = super::state::OutcomeSource::of_signature(signature) == super::state::OutcomeSource::Judged;
        LiveCentroid { weights, sum_sq, top, changed, judged }
    }

    fn norm(&self) -> f64 {
        self.sum_sq.max(0.0).sqrt()
    }

    fn dot(&self, group: &GroupSum) -> f64 {
        // Walking the cluster's entries needs no hashing (the group is dense): cheaper unless
        // the cluster holds many more terms than the group.
        if self.weights.len() <= 2 * group.terms.len() {
            self.weights.iter().filter_map(|(&t, y)| group.get(t).map(|x| x * y)).sum()
        } else {
            group.terms.iter().filter_map(|&t| self.weights.get(&t).map(|y| group.sum[t as usize] * y)).sum()
        }
    }
}

/// Centroid term → the clusters that hold it among their top terms (now or earlier).
#[derive(Default)]
struct TermIndex {
    postings: Vec<Vec<u32>>,
    indexed: HashSet<u64, FxBuildHasher>,
}

impl TermIndex {
    fn add(&mut self, terms: &[u32], ci: usize) {
        for &t in terms {
            if self.indexed.insert((u64::from(t) << 32) | ci as u64) {
                let i = t as usize;
                if i >= self.postings.len() {
                    self.postings.resize_with(i + 1, Vec::new);
                }
                self.postings[i].push(ci as u32);
            }
        }
    }
}

/// Assign `failures` to `existing` clusters or new ones. `idf` should cover the whole
/// corpus (old and new failures); `threshold` is the cosine similarity needed to join.
/// The centroids of the clusters returned are truncated (`Cluster::truncate`), as persisted.
pub fn assign<F: Borrow<Failure>>(failures: &[F], existing: Vec<Cluster>, idf: &Idf, threshold: f64) -> Assignment {
    let groups = signature_groups(failures);

    let mut vocab = Vocab::new(idf);
    let mut clusters = existing;
    let mut live: Vec<LiveCentroid> = Vec::with_capacity(clusters.len() + groups.len().min(1 << 16));
    let mut by_signature: HashMap<String, usize, FxBuildHasher> = HashMap::default();
    let mut by_id: HashMap<String, usize, FxBuildHasher> = HashMap::default();
    let mut index = TermIndex::default();
    for (ci, c) in clusters.iter().enumerate() {
        for s in &c.signatures {
            by_signature.insert(s.clone(), ci);
        }
        by_id.insert(c.id.clone(), ci);
        let weights: HashMap<u32, f64, FxBuildHasher> = c.centroid.iter().map(|(t, &w)| (vocab.intern(t), w)).collect();
        let all: Vec<u32> = weights.keys().copied().collect();
        let top = vocab.top(all, CENTROID_TERMS, |t| weights[&t]);
        let l = LiveCentroid::new(weights, top, false, &c.signature);
        index.add(&l.top, ci);
        live.push(l);
    }

    let mut vectorizer = Vectorizer::default();
    let mut vector = Vec::new();
    let mut group = GroupSum::default();
    let mut search = Search::default();
    let mut cluster_of = vec![String::new(); failures.len()];
    let mut new_clusters = 0;
    for (gi, (key, members)) in groups.iter().enumerate() {
        group.clear();
        for &m in members {
            vectorizer.vector(&mut vocab, failures[m].borrow(), &mut vector);
            for &(t, x) in &vector {
                group.add(t, x);
            }
        }
        let norm = group.terms.iter().map(|&t| group.sum[t as usize].powi(2)).sum::<f64>().sqrt();
        let known = by_signature.get(key).copied();
        let signal = &failures[members[0]].borrow().signature.signal;
        let classed = joins_by_signature_only(signal);
        let target = if known.is_some() || classed {
            known
        } else {
            let probe = vocab.top(group.terms.clone(), PROBE_TERMS, |t| group.sum[t as usize]);
            let infra = failures[members[0]].borrow().infra;
            let judged = super::state::OutcomeSource::of_signature(signal) == super::state::OutcomeSource::Judged;
            let near = Near { group: &group, norm, probe: &probe, infra, judged, threshold };
            search.nearest(gi as u32 + 1, &near, &index, &clusters, &live)
        };
        let ci = match target {
            Some(ci) => {
                live[ci].absorb(&group, &vocab);
                let c = &mut clusters[ci];
                c.members += members.len();
                // A signature already known to a cluster is in that cluster's list.
                if known.is_none() {
                    c.signatures.push(key.clone());
                }
                ci
            }
            None => {
                let id = fresh_id(&failures[members[0]].borrow().signature, &by_id);
                clusters.push(Cluster {
                    id: id.clone(),
                    signature: key.clone(),
                    signatures: vec![key.clone()],
                    centroid: SparseVec::new(),
                    members: members.len(),
                    infra: failures[members[0]].borrow().infra,
                });
                let weights: HashMap<u32, f64, FxBuildHasher> =
                    group.terms.iter().map(|&t| (t, group.sum[t as usize])).collect();
                let top = vocab.top(group.terms.clone(), CENTROID_TERMS, |t| group.sum[t as usize]);
                live.push(LiveCentroid::new(weights, top, true, key));
                new_clusters += 1;
                let ci = clusters.len() - 1;
                by_id.insert(id, ci);
                ci
            }
        };
        by_signature.insert(key.clone(), ci);
        index.add(&live[ci].top, ci);
        for &m in members {
            cluster_of[m] = clusters[ci].id.clone();
        }
    }
    // Centroids come back as they are persisted: their strongest terms (`top` is exactly
    // what `Cluster::truncate` keeps), not every term of every member.
    for (c, l) in clusters.iter_mut().zip(live) {
        if l.changed {
            c.centroid = l.top.iter().map(|t| (vocab.term(*t).to_owned(), l.weights[t])).collect();
        } else {
            c.truncate();
        }
    }
    Assignment { cluster_of, clusters, new_clusters }
}

/// Whether a group with this signal joins only the cluster holding its signature, never
/// another by similarity. A canonical failure class is a decided root cause (two classes
/// whose traces share a long system prompt stay apart), and so is a judge's category: the
/// same text judged differently must not rejoin the cluster of its offline cause. A
/// verdict-only failure nothing explained does not join either: joining would claim a cause.
/// Neither does a tool's own error under signature rules 2 (`tool_error`, `tool_error:handled`):
/// its signature is the tool and the core of what it said, already read by meaning, so two
/// signatures are two errors (a timeout and a missing order of one tool joined by their
/// shared words when mined a day at a time, and not when mined at once).
fn joins_by_signature_only(signal: &str) -> bool {
    signal == "class"
        || signal == "tool_error"
        || signal.starts_with("tool_error:")
        || signal == "verdict:unexplained"
        || signal.starts_with("verdict:judge:")
        || signal.starts_with(super::judge::RUBRIC_SIGNAL)
}

/// Failures grouped by canonical signature, largest groups first (they found the clusters
/// smaller ones join), ties by signature for determinism; members in input order.
fn signature_groups<F: Borrow<Failure>>(failures: &[F]) -> Vec<(String, Vec<usize>)> {
    let mut group_index: HashMap<String, usize, FxBuildHasher> = HashMap::default();
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, f) in failures.iter().enumerate() {
        let key = f.borrow().signature.canonical();
        let g = match group_index.get(&key) {
            Some(&g) => g,
            None => {
                group_index.insert(key.clone(), groups.len());
                groups.push((key, Vec::new()));
                groups.len() - 1
            }
        };
        groups[g].1.push(i);
    }
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    groups
}

/// A new cluster's id: the signature's, extended deterministically when two different
/// signatures share the same short hash.
fn fresh_id(sig: &super::signature::Signature, by_id: &HashMap<String, usize, FxBuildHasher>) -> String {
    let mut id = sig.cluster_id();
    let mut salt = 1;
    while by_id.contains_key(&id) {
        id = super::signature::short_id("k-", &format!("{}#{salt}", sig.canonical()));
        salt += 1;
    }
    id
}

/// What a group looks for: the most similar cluster of its kind at or above `threshold`.
struct Near<'g> {
    group: &'g GroupSum,
    norm: f64,
    /// The group's strongest terms: only clusters holding one of them are candidates.
    probe: &'g [u32],
    infra: bool,
    /// Found by a rubric judge: joins only clusters of judged failures.
    judged: bool,
    threshold: f64,
}

/// Scratch space of the candidate search, reused from group to group.
#[derive(Default)]
struct Search {
    /// Per cluster: the last group (1-based) that listed it.
    seen_at: Vec<u32>,
    candidates: Vec<u32>,
    /// Per candidate cluster: the probe weight it shares.
    shared: Vec<f64>,
}

impl Search {
    /// The cluster a group joins, if any: among the clusters sharing the probe's terms (the
    /// `MAX_CANDIDATES` sharing the most), the most similar by cosine, ties by index.
    fn nearest(
        &mut self,
        stamp: u32,
        near: &Near<'_>,
        index: &TermIndex,
        clusters: &[Cluster],
        live: &[LiveCentroid],
    ) -> Option<usize> {
        let Search { seen_at, candidates, shared } = self;
        let group = near.group;
        seen_at.resize(live.len(), 0);
        shared.resize(live.len(), 0.0);
        candidates.clear();
        for &t in near.probe {
            let postings = index.postings.get(t as usize).map(Vec::as_slice).unwrap_or_default();
            for &ci in postings.iter().take(MAX_POSTINGS) {
                let i = ci as usize;
                if clusters[i].infra != near.infra || live[i].judged != near.judged {
                    continue; // infrastructure and capability failures never mix, nor judged and recorded ones
                }
                if seen_at[i] != stamp {
                    seen_at[i] = stamp;
                    shared[i] = 0.0;
                    candidates.push(ci);
                }
                shared[i] += group.sum[t as usize];
            }
        }
        if candidates.len() > MAX_CANDIDATES {
            // The clusters sharing the most of the probe's weight, then the largest.
            candidates.select_nth_unstable_by(MAX_CANDIDATES - 1, |&a, &b| {
                let (a, b) = (a as usize, b as usize);
                shared[b]
                    .total_cmp(&shared[a])
                    .then_with(|| clusters[b].members.cmp(&clusters[a].members))
                    .then_with(|| a.cmp(&b))
            });
            candidates.truncate(MAX_CANDIDATES);
        }
        let mut best: Option<(f64, usize)> = None;
        for &ci in candidates.iter() {
            let ci = ci as usize;
            let l = &live[ci];
            let l_norm = l.norm();
            let sim = if near.norm == 0.0 || l_norm == 0.0 { 0.0 } else { l.dot(group) / (near.norm * l_norm) };
            if sim >= near.threshold && best.is_none_or(|(b, bi)| sim > b || (sim == b && ci < bi)) {
                best = Some((sim, ci));
            }
        }
        best.map(|(_, ci)| ci)
    }
}

impl LiveCentroid {
    /// Adds a group's sums to the centroid and keeps its norm and top terms up to date.
    fn absorb(&mut self, group: &GroupSum, vocab: &Vocab<'_>) {
        let l = self;
        let mut grew_only = true;
        // The norm follows the changed weights (not a pass over the whole centroid,
        // which grows with the cluster's vocabulary, on every join).
        for &t in &group.terms {
            let x = group.sum[t as usize];
            grew_only &= x >= 0.0;
            let w = l.weights.entry(t).or_insert(0.0);
            let old = *w;
            *w += x;
            l.sum_sq += *w * *w - old * old;
        }
        // Weights only grew, and only the group's terms: the new top terms are among
        // the old top terms and the group's (any other term still has as many above it).
        let pool: Vec<u32> = if grew_only {
            let mut pool = l.top.clone();
            let mut in_pool: HashSet<u32, FxBuildHasher> = pool.iter().copied().collect();
            pool.extend(group.terms.iter().copied().filter(|t| in_pool.insert(*t)));
            pool
        } else {
            l.weights.keys().copied().collect()
        };
        let weights = &l.weights;
        l.top = vocab.top(pool, CENTROID_TERMS, |t| weights[&t]);
        l.changed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mine::failure::CaseSeed;

    /// The plain implementation `assign` must agree with: String-keyed maps, every vector
    /// up front, full sorts, norms recomputed on every comparison.
    fn assign_plain(failures: &[Failure], existing: Vec<Cluster>, idf: &Idf, threshold: f64) -> Assignment {
        fn norm(c: &Cluster) -> f64 {
            c.centroid.values().map(|v| v * v).sum::<f64>().sqrt()
        }
        fn add_into(sum: &mut SparseVec, v: &SparseVec) {
            for (t, x) in v {
                *sum.entry(t.clone()).or_default() += x;
            }
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
        let vectors: Vec<SparseVec> = failures.iter().map(|f| idf.vector(&term_counts(f))).collect();
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
                add_into(&mut centroid, &vectors[m]);
            }
            let gnorm = centroid.values().map(|x| x * x).sum::<f64>().sqrt();
            let target = if let Some(&ci) = by_signature.get(key) {
                Some(ci)
            } else if joins_by_signature_only(&failures[members[0]].signature.signal) {
                None
            } else {
                let mut probe: Vec<(&String, &f64)> = centroid.iter().collect();
                probe.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
                let candidates: HashSet<usize> =
                    probe.iter().take(PROBE_TERMS).filter_map(|(t, _)| term_index.get(*t)).flatten().copied().collect();
                let mut best: Option<(f64, usize)> = None;
                let infra = failures[members[0]].infra;
                for ci in candidates {
                    let c = &clusters[ci];
                    if c.infra != infra
                        || crate::mine::state::OutcomeSource::of_signature(&c.signature)
                            != crate::mine::state::OutcomeSource::of_signature(key)
                    {
                        continue;
                    }
                    let sim = cosine(&centroid, gnorm, &c.centroid, norm(c));
                    if sim >= threshold && best.is_none_or(|(b, bi)| sim > b || (sim == b && ci < bi)) {
                        best = Some((sim, ci));
                    }
                }
                best.map(|(_, ci)| ci)
            };
            let ci = match target {
                Some(ci) => {
                    let c = &mut clusters[ci];
                    add_into(&mut c.centroid, &centroid);
                    c.members += members.len();
                    if !c.signatures.contains(key) {
                        c.signatures.push(key.clone());
                    }
                    ci
                }
                None => {
                    let sig = &failures[members[0]].signature;
                    let mut id = sig.cluster_id();
                    let mut salt = 1;
                    while by_id.contains_key(&id) {
                        id = super::super::signature::short_id("k-", &format!("{}#{salt}", sig.canonical()));
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

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const WORDS: [&str; 40] = [
        "Order",
        "user",
        "refund",
        "cancel",
        "flight",
        "baggage",
        "payment",
        "timeout",
        "retry",
        "server",
        "denied",
        "permission",
        "file",
        "missing",
        "Module",
        "import",
        "table",
        "query",
        "schema",
        "field",
        "tool",
        "search",
        "answer",
        "wrong",
        "policy",
        "address",
        "exchange",
        "item",
        "price",
        "élan",
        "ÉCHEC",
        "straße",
        "the",
        "and",
        "x1",
        "ab",
        "traceback",
        "KeyError",
        "limit",
        "gateway",
    ];

    /// Failures over a small vocabulary, so groups join, ties happen and signatures repeat.
    fn failures(rng: &mut Rng, n: usize, batch: &str) -> Vec<Failure> {
        (0..n)
            .map(|i| {
                let sig = rng.below(12);
                let words = 3 + rng.below(25);
                let text: Vec<&str> = (0..words).map(|_| WORDS[rng.below(WORDS.len())]).collect();
                let infra = sig % 5 == 0;
                Failure {
                    trace_id: format!("{batch}-{i}"),
                    file: format!("{batch}.jsonl"),
                    format: "test".into(),
                    trace_seq: i,
                    infra,
                    signature: Signature {
                        kind: if infra { "infra" } else { "capability" }.into(),
                        signal: ["error:exception", "action:missing", "loop:repeated_call"][sig % 3].into(),
                        step_kind: "tool".into(),
                        tool: (sig % 4 != 0).then(|| ["Bash", "search", "get_order"][sig % 3].to_string()),
                        error_type: (sig % 2 == 0).then(|| "KeyError".to_string()),
                        template: format!("{} failed <n>", WORDS[sig]),
                    },
                    step_id: None,
                    step_ids: Vec::new(),
                    unknown_outcome: false,
                    header_len: 0,
                    step_index: None,
                    message: String::new(),
                    text: text.join(if rng.below(2) == 0 { " " } else { ", " }),
                    excerpt: String::new(),
                    time: None,
                    cost_usd: None,
                    tokens: None,
                    seed: CaseSeed::default(),
                }
            })
            .collect()
    }

    /// `fast` from `assign`, `plain` from `assign_plain` (whose centroids are whole).
    fn same(a: &Assignment, b: &Assignment) {
        let b = Assignment {
            cluster_of: b.cluster_of.clone(),
            new_clusters: b.new_clusters,
            clusters: b
                .clusters
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    c.truncate();
                    c
                })
                .collect(),
        };
        let b = &b;
        assert_eq!(a.cluster_of, b.cluster_of);
        assert_eq!(a.new_clusters, b.new_clusters);
        assert_eq!(a.clusters.len(), b.clusters.len());
        for (x, y) in a.clusters.iter().zip(&b.clusters) {
            assert_eq!(
                (&x.id, &x.signature, &x.signatures, x.members, x.infra),
                (&y.id, &y.signature, &y.signatures, y.members, y.infra)
            );
            let mut xk: Vec<&String> = x.centroid.keys().collect();
            let mut yk: Vec<&String> = y.centroid.keys().collect();
            xk.sort();
            yk.sort();
            assert_eq!(xk, yk, "centroid terms of {}", x.id);
            for (t, v) in &x.centroid {
                assert!((v - y.centroid[t]).abs() < 1e-9, "{t}: {v} vs {}", y.centroid[t]);
            }
        }
    }

    #[test]
    fn tokens_and_term_counts_agree() {
        let text = "Order #W123 of ÉCHEC straße: the KeyError in get_order_details, x1 ab élan tool_call_9 ok";
        let mut fast = Vec::new();
        for_each_token(text, |t| fast.push(t.to_string()));
        assert_eq!(fast, tokens(text).collect::<Vec<_>>());
        assert_eq!(fast, ["order", "échec", "straße", "keyerror", "get_order_details", "élan"]);
        for w in STOPWORDS {
            assert!(is_stopword(w), "{w}");
        }
        assert!(!is_stopword("thee") && !is_stopword("") && !is_stopword("shoulder"));
        // Separators and letters of other scripts, digits of other scripts, long words.
        let mut rng = Rng(99);
        let pieces = [
            "a", "B", "z", "_", "1", " ", ",", "-", "é", "É", "ß", "ǅ", "İ", "٣", "日本", "—", "\u{a0}", "🙃", "the",
            "Thanks", "x", "\n", "Ω", "ω",
        ];
        for _ in 0..2000 {
            let text: String = (0..rng.below(60)).map(|_| pieces[rng.below(pieces.len())]).collect();
            let mut fast = Vec::new();
            for_each_token(&text, |t| fast.push(t.to_string()));
            assert_eq!(fast, tokens(&text).collect::<Vec<_>>(), "{text:?}");
        }
    }

    #[test]
    fn assign_agrees_with_the_plain_implementation() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut joined_by_similarity = 0;
        for threshold in [0.2, 0.5, 0.8] {
            for n in [1, 7, 60, 400] {
                let first = failures(&mut rng, n, "a");
                let second = failures(&mut rng, n / 2 + 1, "b");
                let mut idf = Idf::default();
                for f in first.iter().chain(&second) {
                    idf.add(&term_counts(f));
                }
                let fast = assign(&first, Vec::new(), &idf, threshold);
                let plain = assign_plain(&first, Vec::new(), &idf, threshold);
                same(&fast, &plain);
                joined_by_similarity += fast.clusters.iter().filter(|c| c.signatures.len() > 1).count();
                // A second batch against the persisted (truncated) clusters of the first.
                let persisted: Vec<Cluster> = fast
                    .clusters
                    .iter()
                    .map(|c| {
                        let mut c = c.clone();
                        c.truncate();
                        c
                    })
                    .collect();
                let fast = assign(&second, persisted.clone(), &idf, threshold);
                let plain = assign_plain(&second, persisted, &idf, threshold);
                same(&fast, &plain);
            }
        }
        assert!(joined_by_similarity > 10, "the data must exercise joins by similarity");
    }

    #[test]
    fn an_unexplained_verdict_joins_no_cluster_by_similarity() {
        // Two failures with the same words: one explained, one not. Joining would give the
        // unexplained one a cause nothing showed; with any other signal it joins.
        let mut rng = Rng(3);
        let mut fs = failures(&mut rng, 2, "u");
        for (f, signal) in fs.iter_mut().zip(["verdict:invented_value", "verdict:unexplained"]) {
            f.infra = false;
            f.signature = Signature {
                kind: "capability".into(),
                signal: signal.into(),
                step_kind: "expert".into(),
                tool: None,
                error_type: None,
                template: signal.into(),
            };
            f.text = "the census says lyon has inhabitants final answer".into();
        }
        let idf = |fs: &[Failure]| {
            let mut idf = Idf::default();
            fs.iter().for_each(|f| idf.add(&term_counts(f)));
            idf
        };
        let a = assign(&fs, Vec::new(), &idf(&fs), 0.3);
        assert_ne!(a.cluster_of[0], a.cluster_of[1], "{:?}", a.cluster_of);
        same(&a, &assign_plain(&fs, Vec::new(), &idf(&fs), 0.3));
        fs[1].signature.signal = "verdict:stalled".into();
        fs[1].signature.template = "verdict:stalled".into();
        let a = assign(&fs, Vec::new(), &idf(&fs), 0.3);
        assert_eq!(a.cluster_of[0], a.cluster_of[1], "{:?}", a.cluster_of);
    }

    #[test]
    fn add_failure_counts_like_term_counts() {
        let mut rng = Rng(7);
        let fs = failures(&mut rng, 50, "d");
        let (mut a, mut b) = (Idf::default(), Idf::default());
        for f in &fs {
            a.add(&term_counts(f));
            b.add_failure(f);
        }
        assert_eq!(a.n, b.n);
        assert_eq!(a.df.len(), b.df.len());
        for (t, d) in &a.df {
            assert_eq!(d.docs, b.df[t].docs, "{t}");
        }
    }

    #[test]
    fn idf_vector_matches_the_vectorizer() {
        let mut rng = Rng(42);
        let fs = failures(&mut rng, 30, "v");
        let mut idf = Idf::default();
        for f in &fs {
            idf.add(&term_counts(f));
        }
        let mut vocab = Vocab::new(&idf);
        let mut vz = Vectorizer::default();
        let mut out = Vec::new();
        for f in &fs {
            let plain = idf.vector(&term_counts(f));
            vz.vector(&mut vocab, f, &mut out);
            assert_eq!(out.len(), plain.len());
            for &(t, x) in &out {
                assert!((plain[vocab.term(t)] - x).abs() < 1e-12);
            }
        }
    }
}
