//! Secrets and personal data in what autoharness writes from traces and trials: case files
//! (committed to git, holdout included), store rows (failure text and seeds, trace
//! evidence, trial output), and evidence. Each match becomes a stable placeholder,
//! `[REDACTED:<kind>]`, and is counted so the commands can say what was redacted.
//!
//! What is found: well-known key formats, `Authorization`/`Bearer` values, private key
//! blocks, passwords in URLs, emails, high-entropy tokens (mixed-case letters and digits:
//! never the hex hashes and ids autoharness itself makes), the `[redact]` patterns and
//! field names of `autoharness.toml`, and the values of environment variables a trial was
//! given. One redactor is installed per process ([`install`]) so mining and trials redact
//! alike.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[redact]` in `autoharness.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Extra regular expressions; matches become `[REDACTED:custom]`.
    pub patterns: Vec<String>,
    /// JSON field names (case-insensitive) whose string values are always redacted.
    pub fields: Vec<String>,
    pub emails: bool,
    /// Long tokens of mixed-case letters and digits with high entropy.
    pub entropy: bool,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig { patterns: Vec::new(), fields: Vec::new(), emails: true, entropy: true }
    }
}

/// Field names redacted whatever their value looks like.
const SECRET_FIELDS: [&str; 14] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api_key",
    "apikey",
    "api-key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "access_token",
    "refresh_token",
    "private_key",
    "aws_secret_access_key",
];

/// `(kind, regex)`. Where the regex has a group named `s`, only that group is replaced
/// (the header name or URL around it stays readable). Order matters: the first kind that
/// matches a place names it.
const BUILTIN: [(&str, &str); 13] = [
    (
        "private-key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----",
    ),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}"),
    ("aws-access-key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"),
    ("github-token", r"\b(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b"),
    ("slack-token", r"\bxox[abposre]-[A-Za-z0-9\-]{10,}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    (
        "authorization",
        r#"(?i)\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?(?:(?:basic|bearer|token|digest|apikey)\s+)?(?P<s>[^\s"',;}\]]{6,})"#,
    ),
    ("bearer-token", r"(?i)\bbearer\s+(?P<s>[A-Za-z0-9._~+/\-]{8,}=*)"),
    (
        "password",
        r#"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?key|client[_-]?secret)["']?\s*[:=]\s*["']?(?P<s>[^\s"',;}\]]{4,})"#,
    ),
    ("url-password", r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]+:(?P<s>[^\s@/]+)@"),
    ("email", r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"),
];

/// How many of each kind were redacted, e.g. `{"openai-key": 2, "email": 5}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redactions(pub BTreeMap<String, usize>);

impl Redactions {
    pub fn add(&mut self, kind: &str, n: usize) {
        if n > 0 {
            *self.0.entry(kind.to_string()).or_default() += n;
        }
    }

    pub fn merge(&mut self, other: &Redactions) {
        for (k, n) in &other.0 {
            self.add(k, *n);
        }
    }

    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `2 openai-key, 5 email`.
    pub fn describe(&self) -> String {
        self.0.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
    }
}

pub struct Redactor {
    rules: Vec<(String, Regex)>,
    any: RegexSet,
    fields: Vec<String>,
    entropy: bool,
}

static TOKEN: OnceLock<Regex> = OnceLock::new();

impl Redactor {
    pub fn new(cfg: &RedactConfig) -> anyhow::Result<Redactor> {
        let mut rules = Vec::new();
        for (kind, re) in BUILTIN {
            if kind == "email" && !cfg.emails {
                continue;
            }
            rules.push((kind.to_string(), Regex::new(re).expect("built-in redaction patterns compile")));
        }
        for (i, p) in cfg.patterns.iter().enumerate() {
            let re = Regex::new(p).map_err(|e| {
                anyhow::anyhow!("`[redact] patterns[{i}]` = {p:?} is not a valid regular expression: {e}")
            })?;
            rules.push(("custom".to_string(), re));
        }
        let any = RegexSet::new(rules.iter().map(|(_, r)| r.as_str())).expect("each pattern compiled alone");
        let mut fields: Vec<String> = SECRET_FIELDS.iter().map(|s| s.to_string()).collect();
        fields.extend(cfg.fields.iter().map(|f| f.to_ascii_lowercase()));
        Ok(Redactor { rules, any, fields, entropy: cfg.entropy })
    }

    /// Secrets in `text` replaced, counted into `counts`. Borrowed when nothing was found.
    pub fn text<'a>(&self, text: &'a str, counts: &mut Redactions) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        let env = passed_through();
        if env.iter().any(|(_, v)| v.len() >= 6 && text.contains(v.as_str())) {
            out = Cow::Owned(Redactor::env_values(text, &env, counts));
        }
        let hits = self.any.matches(text);
        if hits.matched_any() {
            for i in hits.iter() {
                let (kind, re) = &self.rules[i];
                let mut n = 0;
                let replaced = re.replace_all(&out, |c: &regex::Captures<'_>| {
                    let whole = c.get(0).expect("a match has group 0");
                    // A placeholder is never redacted again: redacting twice changes nothing.
                    if c.name("s").unwrap_or(whole).as_str().starts_with("[REDACTED") {
                        return whole.as_str().to_string();
                    }
                    n += 1;
                    match c.name("s") {
                        Some(s) => format!(
                            "{}[REDACTED:{kind}]{}",
                            &whole.as_str()[..s.start() - whole.start()],
                            &whole.as_str()[s.end() - whole.start()..]
                        ),
                        None => format!("[REDACTED:{kind}]"),
                    }
                });
                if let Cow::Owned(s) = replaced {
                    out = Cow::Owned(s);
                }
                counts.add(kind, n);
            }
        }
        if self.entropy {
            let re = TOKEN.get_or_init(|| Regex::new(r"[A-Za-z0-9_\-+/=]{24,}").expect("token pattern"));
            if re.find_iter(&out).any(|m| high_entropy(m.as_str())) {
                let mut n = 0;
                let replaced = re
                    .replace_all(&out, |c: &regex::Captures<'_>| {
                        let t = &c[0];
                        if high_entropy(t) {
                            n += 1;
                            "[REDACTED:high-entropy]".to_string()
                        } else {
                            t.to_string()
                        }
                    })
                    .into_owned();
                out = Cow::Owned(replaced);
                counts.add("high-entropy", n);
            }
        }
        out
    }

    /// Redact a string in place.
    pub fn string(&self, s: &mut String, counts: &mut Redactions) {
        if let Cow::Owned(r) = self.text(s, counts) {
            *s = r;
        }
    }

    /// Every string of a JSON value, and the whole value of a secret field.
    pub fn value(&self, v: &mut Value, counts: &mut Redactions) {
        match v {
            Value::String(s) => self.string(s, counts),
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x, counts)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let secret_field = self.fields.iter().any(|f| f.eq_ignore_ascii_case(k));
                    match x {
                        Value::String(s) if secret_field && !s.is_empty() && !s.starts_with("[REDACTED:") => {
                            *s = "[REDACTED:field]".into();
                            counts.add("field", 1);
                        }
                        _ => self.value(x, counts),
                    }
                }
            }
            _ => {}
        }
    }

    /// Values of environment variables a trial was given, replaced in its captured
    /// output. Short values ("1", "yes") are left: replacing them would shred the text
    /// and they are no secrets.
    pub fn env_values(text: &str, env: &[(String, String)], counts: &mut Redactions) -> String {
        let mut out = text.to_string();
        let mut vars: Vec<&(String, String)> = env.iter().filter(|(_, v)| v.len() >= 6).collect();
        // Longest first, so a value containing another is replaced whole.
        vars.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        for (name, value) in vars {
            let n = out.matches(value.as_str()).count();
            if n > 0 {
                out = out.replace(value.as_str(), &format!("[REDACTED:env:{name}]"));
                counts.add("env", n);
            }
        }
        out
    }
}

/// A long token that looks random: letters of both cases and digits, many distinct
/// characters (bits per character close to the maximum for its length). Hex digests,
/// UUIDs, `k-`/`c-` ids and words in camelCase fall short of one or the other.
pub fn high_entropy(token: &str) -> bool {
    let t = token.trim_matches(|c| c == '=' || c == '-' || c == '_' || c == '/' || c == '+');
    if t.len() < 24 || t.contains("REDACTED") {
        return false;
    }
    // Random ids model APIs and tracers give to calls, messages and runs: not secrets, and
    // traces are full of them (measured on ../shared/datasets: all of the hits before this).
    if ID_PREFIXES.iter().any(|p| t.starts_with(p)) {
        return false;
    }
    let (mut upper, mut lower, mut digit) = (0, 0, 0);
    let mut freq = [0u32; 128];
    for b in t.bytes() {
        match b {
            b'A'..=b'Z' => upper += 1,
            b'a'..=b'z' => lower += 1,
            b'0'..=b'9' => digit += 1,
            _ => {}
        }
        freq[(b & 0x7f) as usize] += 1;
    }
    // Identifiers people write (`RemovedInSphinx40Warning`) have few digits.
    if upper < 2 || lower < 2 || digit < 3 {
        return false;
    }
    // Paths (`WikiProject_Plants/Archive66`): `/` splits words a person wrote; only long
    // base64 carries `/` by chance.
    if t.contains('/') && (t.len() < 40 || t.matches('/').count() > 2) {
        return false;
    }
    let n = t.len() as f64;
    let bits: f64 = freq.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum();
    // Random base62 of length n has about log2(min(n, 62)) - a little; text falls below.
    bits >= 0.87 * n.min(62.0).log2()
}

const ID_PREFIXES: [&str; 14] = [
    "call_",
    "chatcmpl-",
    "chatcmpl_",
    "msg_",
    "toolu_",
    "resp_",
    "run-",
    "run_",
    "req_",
    "fc_",
    "rs_",
    "file-",
    "asst_",
    "thread_",
];

/// Files a trial leaves in its `io/` folder larger than this are removed, not scrubbed: a
/// trial's disk cap allows gigabytes, and reading such a file whole to redact it would cost
/// as much memory. Traces and result files are far smaller.
pub const SCRUB_MAX_BYTES: u64 = 64 << 20;

/// Every file a trial left under `dir` (its trace, result file, anything else it wrote),
/// scrubbed like its stored record: the passed-through environment values, then the
/// well-known formats and, for JSON, the secret fields. The trial wrote these files, so
/// nothing in them is trusted: a symlink or special file is removed (never followed, so a
/// link to a host file is not read or rewritten), as is a file too large to scrub or not
/// UTF-8 text (an env value could hide in it unredactable). Rewritten files go through a
/// temporary file and a rename. Errors are returned naming the file: evidence that cannot
/// be scrubbed must not stay.
pub fn scrub_dir(dir: &std::path::Path, env: &[(String, String)]) -> anyhow::Result<Redactions> {
    use anyhow::Context;
    let mut counts = Redactions::default();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list `{}` to redact it", d.display())),
        };
        for entry in entries {
            let path = entry.with_context(|| format!("cannot list `{}` to redact it", d.display()))?.path();
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot inspect `{}` to redact it", path.display()))?;
            let remove = |path: &std::path::Path| {
                std::fs::remove_file(path).with_context(|| format!("cannot remove unscrubbable `{}`", path.display()))
            };
            // A trial may take its own permissions away (chmod 000) to keep a file from
            // being read and scrubbed: the files are ours, so they are made readable again.
            // (Never through a link: `meta` is the entry's own.)
            use std::os::unix::fs::PermissionsExt;
            if meta.is_dir() {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
                todo.push(path);
                continue;
            }
            if meta.is_file() {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
            if !meta.is_file() || meta.len() > SCRUB_MAX_BYTES {
                remove(&path)?;
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read `{}` to redact it", path.display()))?;
            let Ok(text) = String::from_utf8(bytes) else {
                remove(&path)?;
                continue;
            };
            let mut found = Redactions::default();
            let mut out = Redactor::env_values(&text, env, &mut found);
            global().string(&mut out, &mut found);
            // Secret fields of a JSON document, or of each line of a JSON-lines trace.
            let mut fields = Redactions::default();
            if let Ok(mut v) = serde_json::from_str::<Value>(&out) {
                global().value(&mut v, &mut fields);
                if !fields.is_empty() {
                    out = serde_json::to_string_pretty(&v)?;
                }
            } else {
                let lines: Vec<String> = out
                    .split_inclusive('\n')
                    .map(|line| match serde_json::from_str::<Value>(line) {
                        Ok(mut v @ Value::Object(_)) => {
                            let before = fields.total();
                            global().value(&mut v, &mut fields);
                            if fields.total() == before {
                                line.to_string()
                            } else {
                                format!("{v}{}", if line.ends_with('\n') { "\n" } else { "" })
                            }
                        }
                        _ => line.to_string(),
                    })
                    .collect();
                if !fields.is_empty() {
                    out = lines.concat();
                }
            }
            found.merge(&fields);
            if found.is_empty() {
                continue;
            }
            let tmp = path.with_file_name(format!(
                ".{}.redacting",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            std::fs::write(&tmp, &out).with_context(|| format!("cannot write `{}`", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace `{}`", path.display()))?;
            counts.merge(&found);
        }
    }
    Ok(counts)
}

static PASSED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Names of environment variables a harness passes through to its trials (its manifest's
/// `env`), remembered for the process: their values are redacted by every redactor, in
/// whatever autoharness writes (a proposer that ran with the same environment may quote them).
pub fn pass_through(names: &[String]) {
    let mut known = PASSED.lock().unwrap_or_else(|p| p.into_inner());
    for n in names {
        if !known.contains(n) {
            known.push(n.clone());
        }
    }
}

/// The remembered variables with their current values.
fn passed_through() -> Vec<(String, String)> {
    let known = PASSED.lock().unwrap_or_else(|p| p.into_inner());
    known.iter().filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v))).collect()
}

static GLOBAL: OnceLock<Redactor> = OnceLock::new();

/// Install the project's redactor (from `[redact]`) for this process; the first one wins.
pub fn install(cfg: &RedactConfig) -> anyhow::Result<()> {
    let r = Redactor::new(cfg)?;
    let _ = GLOBAL.set(r);
    Ok(())
}

/// The process's redactor: the installed one, else the built-in rules.
pub fn global() -> &'static Redactor {
    GLOBAL.get_or_init(|| Redactor::new(&RedactConfig::default()).expect("default redactor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(s: &str) -> (String, Redactions) {
        let mut c = Redactions::default();
        let out = global().text(s, &mut c).into_owned();
        (out, c)
    }

    #[test]
    fn well_known_formats_become_placeholders() {
        let cases = [
            ("key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z done", "openai-key"),
            ("key sk-ant-api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z-AA done", "anthropic-key"),
            ("AKIAIOSFODNN7EXAMPLE was used", "aws-access-key"),
            ("token ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", "github-token"),
            ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github-token"),
            ("xoxb-1234567890-abcdefghij", "slack-token"),
            ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "google-api-key"),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
            ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization"),
            ("curl -H 'x' bearer abcdef0123456789", "bearer-token"),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "private-key"),
            ("postgres://admin:hunter22@db.internal/x", "url-password"),
            ("mail jane.doe@example.com now", "email"),
            ("password=hunter22", "password"),
        ];
        for (text, kind) in cases {
            let (out, c) = redact(text);
            assert!(out.contains(&format!("[REDACTED:{kind}]")), "{text} → {out} ({c:?})");
            assert_eq!(c.0.get(kind), Some(&1), "{text} → {out} ({c:?})");
        }
        let (out, _) = redact("postgres://admin:hunter22@db.internal/x");
        assert_eq!(out, "postgres://admin:[REDACTED:url-password]@db.internal/x");
    }

    #[test]
    fn our_ids_hashes_and_prose_are_left_alone() {
        for text in [
            "k-77a207b7 c-0123abcd",
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            "123e4567-e89b-12d3-a456-426614174000",
            "The customer asked for a refund of order #W2378156 on 2024-05-01.",
            "get_order_details getProductDetailsForCustomerOrder2 calculate_shipping",
            "src/trace/formats/openai_agents.rs tests/fixtures/formats/codex/x.jsonl",
        ] {
            let (out, c) = redact(text);
            assert_eq!(out, text, "{c:?}");
        }
        let (out, c) = redact("token Zx8Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk0L");
        assert_eq!(c.0.get("high-entropy"), Some(&1), "{out}");
    }

    #[test]
    fn a_trial_folder_is_scrubbed_and_its_links_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        let host = outside.path().join("host.txt");
        std::fs::write(&host, "sk-proj-Zq8Wx3Ec5Rv7Tb9Yn1Um2Ik4Ol6Pa0Sd").unwrap();
        let io = tempfile::tempdir().unwrap();
        std::fs::create_dir(io.path().join("sub")).unwrap();
        std::fs::write(io.path().join("sub/trace.jsonl"), "{\"password\":\"x1\",\"t\":\"s3cr3tvalue\"}\nplain\n")
            .unwrap();
        std::fs::write(io.path().join("bin"), [0xff, 0xfe, b's']).unwrap();
        std::os::unix::fs::symlink(&host, io.path().join("link")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(io.path().join("sub/locked.txt"), "s3cr3tvalue").unwrap();
        std::fs::set_permissions(io.path().join("sub/locked.txt"), std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(io.path().join("sub"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let c = scrub_dir(io.path(), &[("TOKEN".into(), "s3cr3tvalue".into())]).unwrap();
        let kept = std::fs::read_to_string(io.path().join("sub/trace.jsonl")).unwrap();
        assert_eq!(kept, "{\"password\":\"[REDACTED:field]\",\"t\":\"[REDACTED:env:TOKEN]\"}\nplain\n", "{c:?}");
        assert!(!io.path().join("link").exists() && std::fs::symlink_metadata(io.path().join("link")).is_err());
        assert!(!io.path().join("bin").exists(), "bytes that are not text cannot be scrubbed");
        assert_eq!(std::fs::read_to_string(io.path().join("sub/locked.txt")).unwrap(), "[REDACTED:env:TOKEN]");
        assert_eq!(
            std::fs::read_to_string(&host).unwrap(),
            "sk-proj-Zq8Wx3Ec5Rv7Tb9Yn1Um2Ik4Ol6Pa0Sd",
            "the host file"
        );
    }

    #[test]
    fn fields_and_env_values() {
        let r = Redactor::new(&RedactConfig { fields: vec!["ssn".into()], ..Default::default() }).unwrap();
        let mut c = Redactions::default();
        let mut v = serde_json::json!({"user": {"SSN": "078-05-1120", "name": "Ann"}, "api_key": "abc"});
        r.value(&mut v, &mut c);
        assert_eq!(v["user"]["SSN"], "[REDACTED:field]");
        assert_eq!(v["user"]["name"], "Ann");
        assert_eq!(v["api_key"], "[REDACTED:field]");
        assert_eq!(c.0.get("field"), Some(&2));
        let out = Redactor::env_values("v=s3cr3tvalue ok", &[("TOKEN".into(), "s3cr3tvalue".into())], &mut c);
        assert_eq!(out, "v=[REDACTED:env:TOKEN] ok");
        assert!(Redactor::new(&RedactConfig { patterns: vec!["(".into()], ..Default::default() }).is_err());
    }
}
