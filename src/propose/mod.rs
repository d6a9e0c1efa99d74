//! Proposers: where candidate harness diffs come from. `knobs` (built-in, offline) searches
//! the manifest's knobs; `ask_llm` asks a model through `crate::llm`; `brief`
//! writes what a model is asked; `answer` turns its untrusted answer into a checked diff;
//! `edits` holds the file edits and diffs proposers produce.

pub mod edits;
pub mod knobs;

use serde::Serialize;

/// One attempt at a diff for a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    pub provider: String,
    pub description: String,
    /// Unified diff, paths relative to the harness root.
    pub diff: String,
    /// Clusters the proposer expects to fix, and clusters it puts at risk.
    pub fixes: Vec<String>,
    pub risks: Vec<String>,
    pub prompt: Option<String>,
    pub answer: Option<String>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub cost_usd: f64,
    /// Why this proposal could not be used (unparseable answer, patch outside editable…).
    pub error: Option<String>,
}

impl Proposal {
    /// Identity of a proposal within an iteration: its diff, or for an unusable answer
    /// the answer and the error (two different failures are two records).
    pub fn diff_hash(&self) -> String {
        let key = if self.diff.is_empty() {
            format!("{}\n{}", self.error.as_deref().unwrap_or(""), self.answer.as_deref().unwrap_or(""))
        } else {
            self.diff.clone()
        };
        blake3::hash(key.as_bytes()).to_hex()[..16].to_string()
    }
}

pub mod answer;
pub mod brief;

use std::path::Path;
use std::time::Duration;

use globset::GlobSet;
use serde::Deserialize;

use crate::llm;

crate::schema::text_enum! {
    /// Where diffs come from.
    #[derive(Default)]
    pub enum ProposerKind ("proposer") {
        /// The offline search over the manifest's knobs.
        #[default]
        Knobs = "knobs",
        /// Any OpenAI-compatible endpoint.
        Openai = "openai",
        Anthropic = "anthropic",
        /// A coding agent run in a scratch copy of the harness, brief on stdin.
        Command = "command",
    }
}

impl ProposerKind {
    /// `openai` and `anthropic`: the providers reached over HTTP with a model.
    pub fn is_llm(self) -> bool {
        matches!(self, ProposerKind::Openai | ProposerKind::Anthropic)
    }
}

/// `[proposer]` in autoharness.toml. Every key is optional; the default is `knobs`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProposerConfig {
    pub provider: ProposerKind,
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// For `command`: a coding agent run in a scratch copy of the harness, brief on stdin.
    pub command: Option<String>,
    pub timeout: String,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    /// Dollars per million input / output tokens (default: a built-in table, 0 for unknown models).
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
    /// The model's context window in tokens: the brief is cut to fit it with `max_tokens`.
    pub context_tokens: u32,
}

impl Default for ProposerConfig {
    fn default() -> Self {
        ProposerConfig {
            provider: ProposerKind::Knobs,
            base_url: None,
            model: None,
            api_key_env: None,
            command: None,
            timeout: "120s".into(),
            max_tokens: 2048,
            temperature: Some(0.2),
            input_per_mtok: None,
            output_per_mtok: None,
            context_tokens: 32_000,
        }
    }
}

impl ProposerConfig {
    /// The HTTP client settings for `openai` / `anthropic`.
    pub fn llm(&self) -> anyhow::Result<llm::ProviderConfig> {
        let (kind, default_url) = match self.provider {
            ProposerKind::Openai => (llm::ProviderKind::OpenAi, "https://api.openai.com/v1"),
            ProposerKind::Anthropic => (llm::ProviderKind::Anthropic, "https://api.anthropic.com"),
            other => anyhow::bail!("provider `{other}` is not an HTTP provider"),
        };
        let model = self.model.clone().ok_or_else(|| {
            crate::exit::hinted(
                format!("the `{}` proposer needs a model", self.provider),
                "set [proposer] model = \"...\" in autoharness.toml or pass --model",
            )
        })?;
        let mut c = llm::ProviderConfig::new(kind, self.base_url.clone().unwrap_or_else(|| default_url.into()), model);
        if let Some(k) = &self.api_key_env {
            c.api_key_env = Some(k.clone());
        } else if kind == llm::ProviderKind::OpenAi && self.base_url.is_none() {
            c.api_key_env = Some("OPENAI_API_KEY".into());
        }
        c.timeout = crate::harness::manifest::parse_duration(&self.timeout).unwrap_or(Duration::from_secs(120));
        c.max_tokens = self.max_tokens;
        c.temperature = self.temperature;
        if let (Some(i), Some(o)) = (self.input_per_mtok, self.output_per_mtok) {
            c.price = llm::Price { input_per_mtok: i, output_per_mtok: o };
        }
        Ok(c)
    }
}

impl Proposal {
    /// A proposal with nothing in it yet, from `provider`.
    pub fn empty(provider: &str) -> Proposal {
        Proposal {
            provider: provider.into(),
            description: String::new(),
            diff: String::new(),
            fixes: vec![],
            risks: vec![],
            prompt: None,
            answer: None,
            tokens_in: None,
            tokens_out: None,
            cost_usd: 0.0,
            error: None,
        }
    }
}

/// Ask an HTTP model for a diff; on an unusable answer, ask once more with the reason.
pub async fn ask_llm(
    cfg: &llm::ProviderConfig,
    brief: &str,
    root: &Path,
    editable: &GlobSet,
    provider: &str,
) -> Proposal {
    let mut p = Proposal::empty(provider);
    p.prompt = Some(brief.to_string());
    let mut user = brief.to_string();
    for attempt in 0..2 {
        let req = llm::ChatRequest {
            system: brief::SYSTEM.into(),
            user: user.clone(),
            json_schema: Some(brief::answer_schema()),
        };
        match llm::complete(cfg, &req).await {
            Ok(r) => {
                p.tokens_in = Some(p.tokens_in.unwrap_or(0) + r.input_tokens);
                p.tokens_out = Some(p.tokens_out.unwrap_or(0) + r.output_tokens);
                p.cost_usd += r.cost_usd;
                p.answer = Some(r.text.clone());
                match answer::parse(&r.text, root, editable) {
                    Ok(parsed) => {
                        p.description = if parsed.summary.is_empty() {
                            format!("{provider} proposal")
                        } else {
                            crate::trace::json::clip(&parsed.summary, 120)
                        };
                        p.diff = parsed.diff;
                        p.fixes = parsed.fixes;
                        p.risks = parsed.risks;
                        p.error = None;
                        return p;
                    }
                    Err(why) => {
                        p.error = Some(format!("answer {}: {why}", attempt + 1));
                        user = format!(
                            "{brief}\n\n## Your previous answer could not be used\n\n{why}\n\nAnswer again with one JSON object as described."
                        );
                    }
                }
            }
            Err(e) => {
                p.error = Some(e.to_string());
                return p;
            }
        }
    }
    p
}

/// Run a coding agent in a scratch copy of the harness with the brief on stdin; its diff
/// is what it changed in the editable files.
pub async fn ask_command(
    command: &str,
    brief: &str,
    root: &Path,
    editable: &GlobSet,
    scratch: &Path,
    timeout: Duration,
) -> Proposal {
    let mut p = Proposal::empty("command");
    p.prompt = Some(brief.to_string());
    let result: anyhow::Result<String> = async {
        if scratch.exists() {
            std::fs::remove_dir_all(scratch)?;
        }
        crate::harness::workspace::private_copy(root, scratch, &crate::harness::workspace::Filter::default())?;
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .current_dir(scratch)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(brief.as_bytes()).await;
        }
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| anyhow::anyhow!("`{command}` did not finish within {}s", timeout.as_secs()))??;
        p.answer = Some(crate::trace::json::clip(&String::from_utf8_lossy(&out.stdout), 4000));
        if !out.status.success() {
            anyhow::bail!(
                "`{command}` failed: {}",
                crate::trace::json::clip(String::from_utf8_lossy(&out.stderr).trim(), 300)
            );
        }
        Ok(crate::harness::patch::diff_trees(root, scratch, editable)?)
    }
    .await;
    let _ = std::fs::remove_dir_all(scratch);
    match result {
        Ok(d) if d.trim().is_empty() => p.error = Some("the command changed no editable file".into()),
        Ok(d) => {
            p.description = format!("`{command}` changes");
            p.diff = d;
        }
        Err(e) => p.error = Some(format!("{e:#}")),
    }
    p
}
