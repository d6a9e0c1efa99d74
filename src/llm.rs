//! The LLM provider layer of the proposer: one chat completion against an OpenAI-compatible
//! endpoint (OpenAI, vLLM, llama.cpp server, Ollama, OpenRouter) or Anthropic's Messages API.
//!
//! Everything a caller needs to record (text, tokens, dollars, attempts, latency) comes back in
//! [`ChatResponse`]; failures come back as [`LlmError`] values whose messages name the endpoint
//! and the next step. The API key is read from the environment at call time and only ever placed
//! in a sensitive request header: it is never stored in a struct, an error or a log line.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which wire protocol the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// `POST {base_url}/chat/completions`, Bearer key.
    OpenAi,
    /// `POST {base_url}/v1/messages`, `x-api-key`.
    Anthropic,
}

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok) / 1_000_000.0
    }
}

pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// e.g. `http://127.0.0.1:8080/v1` (OpenAI) or `https://api.anthropic.com` (Anthropic).
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the key; `None` sends no key (local servers).
    pub api_key_env: Option<String>,
    /// Bound on one HTTP attempt, from sending the request to the last byte of the body.
    pub timeout: Duration,
    /// Extra attempts after a retriable failure (429, 5xx gateway errors, connection, timeout).
    pub max_retries: u32,
    pub temperature: Option<f64>,
    pub max_tokens: u32,
    pub price: Price,
    pub max_response_bytes: usize,
    /// When the caller's time runs out (`run --time-limit`): no attempt, retry or
    /// `Retry-After` wait goes past it.
    pub deadline: Option<Instant>,
}

impl ProviderConfig {
    /// A config with the defaults the proposer uses; the key variable is the provider's usual one
    /// for Anthropic and none for OpenAI-compatible servers, which are often local and keyless.
    pub fn new(kind: ProviderKind, base_url: impl Into<String>, model: impl Into<String>) -> Self {
        let model = model.into();
        ProviderConfig {
            kind,
            base_url: base_url.into(),
            price: default_price(&model),
            model,
            api_key_env: match kind {
                ProviderKind::OpenAi => None,
                ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY".to_owned()),
            },
            timeout: Duration::from_secs(120),
            max_retries: 3,
            temperature: None,
            max_tokens: 4096,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            deadline: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub system: String,
    pub user: String,
    /// When set, OpenAI-compatible servers are asked for `response_format: json_schema`; a server
    /// that rejects it gets the request again without it, with the schema in the system prompt
    /// (and, for the rest of the process, gets that weaker format first: [`KNOWN_FORMAT`]).
    /// Anthropic has no such field, so there the schema always goes into the system prompt.
    pub json_schema: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// The model the server says answered, which may differ from the one asked for (aliases).
    pub model: String,
    /// HTTP requests sent, including retries and the one without `response_format`.
    pub attempts: u32,
    /// Wall time of the whole call, retries and waits included.
    pub latency_ms: u64,
    pub finish_reason: Option<String>,
    /// The server reported no usage, so the token counts are estimates (characters / 4).
    pub usage_estimated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error(
        "the environment variable {var} that should hold the LLM API key is not set or empty; export it or point api_key_env at the right variable"
    )]
    MissingApiKey { var: String },

    #[error("invalid LLM provider config: {message}")]
    Config { message: String },

    #[error("{url} answered HTTP {status}: {body}{}", if hint.is_empty() { String::new() } else { format!(" ({hint})") })]
    Http { url: String, status: u16, body: String, retry_after: Option<Duration>, hint: &'static str },

    #[error(
        "no complete answer from {url} within {timeout:?}; raise the proposer timeout or check that the server is not overloaded"
    )]
    Timeout { url: String, timeout: Duration },

    #[error("could not talk to {url}: {message}; check base_url and that the server is running")]
    Connection { url: String, message: String },

    #[error(
        "the answer from {url} is larger than {limit} bytes, so reading stopped; lower max_tokens or raise max_response_bytes"
    )]
    TooLarge { url: String, limit: usize },

    #[error("the answer from {url} is not the expected JSON ({message}); it starts with: {excerpt}")]
    Malformed { url: String, message: String, excerpt: String },

    #[error(
        "{url} answered with no text (finish_reason {finish_reason:?}); raise max_tokens if it is \"length\", or shorten the prompt"
    )]
    EmptyAnswer { url: String, finish_reason: Option<String> },

    #[error("gave up on {url} after {attempts} attempts; last error: {last}")]
    RetriesExhausted { url: String, attempts: u32, last: Box<LlmError> },

    #[error(
        "the time limit ran out waiting for {url} after {attempts} attempt(s){}; raise --time-limit or use a faster server",
        last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    OutOfTime { url: String, attempts: u32, last: Option<Box<LlmError>> },
}

impl LlmError {
    fn is_retriable(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            LlmError::Timeout { .. } | LlmError::Connection { .. } => true,
            _ => false,
        }
    }
}

/// List prices (USD per million tokens) of a few well-known models, so budgets work without
/// configuration; unknown and local models cost 0. Matched by prefix after any `vendor/` part
/// (OpenRouter style), longest prefix first so `gpt-4o-mini` does not match `gpt-4o`.
pub fn default_price(model: &str) -> Price {
    const TABLE: &[(&str, f64, f64)] = &[
        ("gpt-4o-mini", 0.15, 0.60),
        ("gpt-4o", 2.50, 10.00),
        ("gpt-4.1-nano", 0.10, 0.40),
        ("gpt-4.1-mini", 0.40, 1.60),
        ("gpt-4.1", 2.00, 8.00),
        ("o4-mini", 1.10, 4.40),
        ("o3-mini", 1.10, 4.40),
        ("o3", 2.00, 8.00),
        ("claude-3-haiku", 0.25, 1.25),
        ("claude-3-5-haiku", 0.80, 4.00),
        ("claude-haiku-4-5", 1.00, 5.00),
        ("claude-3-5-sonnet", 3.00, 15.00),
        ("claude-3-7-sonnet", 3.00, 15.00),
        ("claude-sonnet-4", 3.00, 15.00),
        ("claude-opus-4-5", 5.00, 25.00),
        ("claude-opus-4", 15.00, 75.00),
    ];
    let name = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    TABLE
        .iter()
        .filter(|(prefix, _, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|&(_, input_per_mtok, output_per_mtok)| Price { input_per_mtok, output_per_mtok })
        .unwrap_or_default()
}

/// Cap on a server-requested wait, so a misbehaving `Retry-After` cannot stall a nightly run.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
// Tests exercise several backoffs; a real base would make them slow without testing more.
const BACKOFF_BASE: Duration = if cfg!(test) { Duration::from_millis(10) } else { Duration::from_secs(1) };
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Error bodies only feed a message, so more than this is never read from them.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
const EXCERPT_CHARS: usize = 300;

/// Sends one chat completion, retrying transient failures, and returns the answer with its cost.
pub async fn complete(cfg: &ProviderConfig, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
    complete_with_env(cfg, req, |var| std::env::var(var).ok()).await
}

/// [`complete`] with the environment lookup passed in, so tests can supply a key without
/// `set_var`, which is unsafe while other test threads read the environment.
async fn complete_with_env(
    cfg: &ProviderConfig,
    req: &ChatRequest,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ChatResponse, LlmError> {
    let started = Instant::now();
    let key = api_key(cfg, env)?;
    let url = endpoint(cfg)?;
    let client = client(cfg, &url)?;
    let headers = headers(cfg, key.as_deref())?;
    let mut format = match (cfg.kind, &req.json_schema) {
        (ProviderKind::OpenAi, Some(_)) => known_format(cfg).unwrap_or(Format::JsonSchema),
        _ => Format::Prompt,
    };
    let asked_first = format;
    let mut rng = XorShift::from_time();
    let mut attempts = 0u32;
    let mut retries = 0u32;
    let left = || cfg.deadline.map(|d| d.saturating_duration_since(Instant::now()));
    loop {
        let timeout = match left() {
            Some(left) if left.is_zero() => {
                return Err(LlmError::OutOfTime { url: url.to_string(), attempts, last: None });
            }
            Some(left) => cfg.timeout.min(left),
            None => cfg.timeout,
        };
        attempts += 1;
        let body = request_body(cfg, req, format);
        let result = send(&client, &url, &headers, &body, cfg, timeout).await;
        let error = match result {
            Ok(bytes) => {
                let mut response = parse(cfg, req, &url, &bytes)?;
                if format != asked_first {
                    remember_format(cfg, format);
                }
                response.attempts = attempts;
                response.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                return Ok(response);
            }
            Err(error) => error,
        };
        if format != Format::Prompt && rejects_format(&error) {
            format = format.weaker();
            continue;
        }
        if !error.is_retriable() {
            return Err(redact(error, key.as_deref()));
        }
        if retries >= cfg.max_retries {
            let error = redact(error, key.as_deref());
            return Err(if attempts == 1 {
                error
            } else {
                LlmError::RetriesExhausted { url: url.to_string(), attempts, last: Box::new(error) }
            });
        }
        retries += 1;
        let wait = match &error {
            LlmError::Http { retry_after: Some(wait), .. } => (*wait).min(MAX_RETRY_AFTER),
            _ => backoff(retries, &mut rng),
        };
        // A wait that would end after the deadline is not started: the answer could not come in time.
        if left().is_some_and(|left| wait >= left) {
            let last = Some(Box::new(redact(error, key.as_deref())));
            return Err(LlmError::OutOfTime { url: url.to_string(), attempts, last });
        }
        tokio::time::sleep(wait).await;
    }
}

/// How a JSON answer is asked for, strongest first; a server that rejects one gets the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `response_format: {type: json_schema}`: OpenAI, vLLM, llama.cpp's own server, Ollama.
    JsonSchema,
    /// `response_format: {type: json_object, schema}`: llama-cpp-python's server, which rejects
    /// `json_schema` but constrains its output to the schema given this way.
    JsonObject,
    /// No `response_format`; any schema is only described in the system prompt.
    Prompt,
}

impl Format {
    fn weaker(self) -> Format {
        match self {
            Format::JsonSchema => Format::JsonObject,
            Format::JsonObject | Format::Prompt => Format::Prompt,
        }
    }
}

/// The format each server answered in after refusing a stronger one, by (base URL, model):
/// asked first for the rest of the process, so a server that refuses `json_schema`
/// (llama-cpp-python) costs one request per ask, not two. Only a refusal followed by an
/// answer in the weaker format is remembered: a transient failure is retried in the same
/// format and leaves nothing here, and a 400 that was about something else fails in every
/// format and is never followed by an answer.
static KNOWN_FORMAT: LazyLock<Mutex<HashMap<(String, String), Format>>> = LazyLock::new(Mutex::default);

fn format_key(cfg: &ProviderConfig) -> (String, String) {
    (cfg.base_url.trim_end_matches('/').to_owned(), cfg.model.clone())
}

fn known_format(cfg: &ProviderConfig) -> Option<Format> {
    // A poisoned map only lost a hint: asking in the strongest format again is still correct.
    KNOWN_FORMAT.lock().ok()?.get(&format_key(cfg)).copied()
}

fn remember_format(cfg: &ProviderConfig, format: Format) {
    if let Ok(mut known) = KNOWN_FORMAT.lock() {
        known.insert(format_key(cfg), format);
    }
}

/// Whether an error means the server does not take the `response_format` we sent: 400 or 422
/// (FastAPI servers reject unknown values with 422), or any status whose message names the field
/// (llama-cpp-python wraps its validation error in a 500).
fn rejects_format(error: &LlmError) -> bool {
    match error {
        LlmError::Http { status: 400 | 422, .. } => true,
        LlmError::Http { body, .. } => body.contains("response_format"),
        _ => false,
    }
}

fn api_key(cfg: &ProviderConfig, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, LlmError> {
    let Some(var) = &cfg.api_key_env else { return Ok(None) };
    // Keys pasted from files often carry a trailing newline, which is not valid in a header.
    match env(var).map(|key| key.trim().to_owned()) {
        Some(key) if !key.is_empty() => Ok(Some(key)),
        _ => Err(LlmError::MissingApiKey { var: var.clone() }),
    }
}

fn endpoint(cfg: &ProviderConfig) -> Result<reqwest::Url, LlmError> {
    let base = cfg.base_url.trim().trim_end_matches('/');
    let full = match cfg.kind {
        ProviderKind::OpenAi => format!("{base}/chat/completions"),
        // Accept a base_url that already ends in /v1, as OpenAI-style configs usually do.
        ProviderKind::Anthropic if base.ends_with("/v1") => format!("{base}/messages"),
        ProviderKind::Anthropic => format!("{base}/v1/messages"),
    };
    let url = reqwest::Url::parse(&full).map_err(|e| LlmError::Config {
        message: format!("base_url {:?} is not a valid URL ({e}); use e.g. http://127.0.0.1:8080/v1", cfg.base_url),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LlmError::Config {
            message: format!("base_url {:?} must start with http:// or https://", cfg.base_url),
        });
    }
    Ok(url)
}

fn client(cfg: &ProviderConfig, url: &reqwest::Url) -> Result<reqwest::Client, LlmError> {
    // Redirects are refused: following one would resend the key to wherever it points.
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(cfg.timeout);
    // A CI-wide HTTP(S)_PROXY must not swallow requests to a server on this machine.
    if matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| LlmError::Config { message: format!("could not build the HTTP client: {e}") })
}

fn headers(cfg: &ProviderConfig, key: Option<&str>) -> Result<HeaderMap, LlmError> {
    let mut headers = HeaderMap::new();
    let Some(key) = key else { return Ok(headers) };
    let (name, value) = match cfg.kind {
        ProviderKind::OpenAi => ("authorization", format!("Bearer {key}")),
        ProviderKind::Anthropic => ("x-api-key", key.to_owned()),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| LlmError::Config {
        message: format!(
            "the value of {} contains characters not allowed in an HTTP header; check what it holds",
            cfg.api_key_env.as_deref().unwrap_or("the API key variable")
        ),
    })?;
    // Keeps the key out of any Debug output of the request.
    value.set_sensitive(true);
    headers.insert(name, value);
    if cfg.kind == ProviderKind::Anthropic {
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    }
    Ok(headers)
}

fn system_prompt(req: &ChatRequest, schema_in_prompt: bool) -> String {
    match (&req.json_schema, schema_in_prompt) {
        (Some(schema), true) => {
            let instruction =
                format!("Answer with one JSON value that matches this JSON Schema, and nothing else:\n{schema}");
            if req.system.is_empty() { instruction } else { format!("{}\n\n{instruction}", req.system) }
        }
        _ => req.system.clone(),
    }
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    stream: bool,
}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    system: &'a str,
    messages: Vec<Message<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
}

fn request_body(cfg: &ProviderConfig, req: &ChatRequest, format: Format) -> Value {
    // json_schema hands the schema to the model itself; otherwise only the prompt can carry it
    // (and OpenAI accepts json_object only when the prompt mentions JSON).
    let system = system_prompt(req, format != Format::JsonSchema);
    let user = Message { role: "user", content: &req.user };
    let body = match cfg.kind {
        ProviderKind::OpenAi => {
            let mut messages = Vec::with_capacity(2);
            if !system.is_empty() {
                messages.push(Message { role: "system", content: &system });
            }
            messages.push(user);
            let response_format = match (&req.json_schema, format) {
                (Some(schema), Format::JsonSchema) => Some(serde_json::json!({
                    "type": "json_schema",
                    "json_schema": { "name": "answer", "schema": schema },
                })),
                (Some(schema), Format::JsonObject) => {
                    Some(serde_json::json!({ "type": "json_object", "schema": schema }))
                }
                _ => None,
            };
            serde_json::to_value(OpenAiBody {
                model: &cfg.model,
                messages,
                max_tokens: cfg.max_tokens,
                temperature: cfg.temperature,
                response_format,
                stream: false,
            })
        }
        ProviderKind::Anthropic => serde_json::to_value(AnthropicBody {
            model: &cfg.model,
            system: &system,
            messages: vec![user],
            max_tokens: cfg.max_tokens,
            temperature: cfg.temperature,
        }),
    };
    // Serializing plain strings, numbers and a Value cannot fail.
    body.unwrap_or(Value::Null)
}

/// One HTTP attempt, bounded as a whole by `cfg.timeout`; returns the body of a 2xx answer.
async fn send(
    client: &reqwest::Client,
    url: &reqwest::Url,
    headers: &HeaderMap,
    body: &Value,
    cfg: &ProviderConfig,
    timeout: Duration,
) -> Result<Vec<u8>, LlmError> {
    let attempt = async {
        let response = client
            .post(url.clone())
            .headers(headers.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(url, &e, cfg.timeout))?;
        let status = response.status();
        if status.is_success() {
            return read_capped(response, url, cfg).await;
        }
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let bytes = read_prefix(response, ERROR_BODY_LIMIT).await;
        Err(LlmError::Http {
            url: url.to_string(),
            status: status.as_u16(),
            body: error_excerpt(&bytes),
            retry_after,
            hint: status_hint(status.as_u16()),
        })
    };
    // reqwest's timeout should cover the same span; this one holds whatever reqwest counts.
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(LlmError::Timeout { url: url.to_string(), timeout }),
    }
}

fn transport_error(url: &reqwest::Url, e: &reqwest::Error, timeout: Duration) -> LlmError {
    if e.is_timeout() {
        return LlmError::Timeout { url: url.to_string(), timeout };
    }
    // The top-level message is generic ("error sending request"); the cause says what failed.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    LlmError::Connection { url: url.to_string(), message }
}

async fn read_capped(
    mut response: reqwest::Response,
    url: &reqwest::Url,
    cfg: &ProviderConfig,
) -> Result<Vec<u8>, LlmError> {
    let limit = cfg.max_response_bytes;
    let too_large = || LlmError::TooLarge { url: url.to_string(), limit };
    if response.content_length().is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(url, &e, cfg.timeout))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most `limit` bytes; a failure mid-body just ends the excerpt, since the status
/// already says what went wrong.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "check the API key and that it may use this model",
        404 => "check base_url (OpenAI-compatible ones usually end in /v1) and the model name",
        300..=399 => "the server redirected; set base_url to the final address",
        413 => "the prompt is too large for this server",
        429 => "rate limited; wait or lower the request rate",
        _ => "",
    }
}

/// The server's own error message when the body has the usual `{"error": {"message"}}` shape
/// (OpenAI and Anthropic both use it), else the start of the raw body.
fn error_excerpt(bytes: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let message = parsed.as_ref().and_then(|v| {
        let error = v.get("error")?;
        error.get("message").and_then(Value::as_str).or_else(|| error.as_str()).map(str::to_owned)
    });
    let text = message.unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    let text = excerpt(&text);
    if text.is_empty() { "(empty body)".to_owned() } else { text }
}

fn excerpt(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

/// Servers can echo the key in error bodies (some mask it, some do not); it must not reach
/// an error message that the caller logs or stores.
fn redact(error: LlmError, key: Option<&str>) -> LlmError {
    let Some(key) = key.filter(|k| k.len() >= 8) else { return error };
    match error {
        LlmError::Http { url, status, body, retry_after, hint } => {
            LlmError::Http { url, status, body: body.replace(key, "[redacted]"), retry_after, hint }
        }
        other => other,
    }
}

/// `Retry-After` in seconds or as an HTTP date, or OpenAI's `retry-after-ms`.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) =
        headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses the IMF-fixdate form of RFC 9110 (`Sun, 06 Nov 1994 08:49:37 GMT`), the only one
/// servers are allowed to send.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let (_weekday, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let day: u32 = day.parse().ok()?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = u32::try_from(MONTHS.iter().position(|m| m == month)? + 1).ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Exponential backoff with jitter, so clients that failed together do not retry together.
fn backoff(retry: u32, rng: &mut XorShift) -> Duration {
    let full = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1))).min(BACKOFF_MAX);
    let half = full / 2;
    let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    half + Duration::from_millis(if jitter_ms == 0 { 0 } else { rng.next() % (jitter_ms + 1) })
}

/// Jitter needs no quality, only a different sequence per process.
struct XorShift(u64);

impl XorShift {
    fn from_time() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        XorShift(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Deserialize)]
struct OpenAiResponse {
    #[serde(default)]
    choices: Vec<OpenAiChoice>,
    usage: Option<OpenAiUsage>,
    model: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    message: Option<OpenAiMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct OpenAiMessage {
    // A string from most servers, null with tool calls, an array of parts from a few.
    #[serde(default)]
    content: Value,
}

#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct AnthropicResponse {
    #[serde(default)]
    content: Vec<AnthropicBlock>,
    usage: Option<AnthropicUsage>,
    model: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

fn parse(cfg: &ProviderConfig, req: &ChatRequest, url: &reqwest::Url, bytes: &[u8]) -> Result<ChatResponse, LlmError> {
    let malformed = |e: serde_json::Error| LlmError::Malformed {
        url: url.to_string(),
        message: e.to_string(),
        excerpt: excerpt(&String::from_utf8_lossy(&bytes[..bytes.len().min(4 * EXCERPT_CHARS)])),
    };
    let (text, usage, model, finish_reason) = match cfg.kind {
        ProviderKind::OpenAi => {
            let response: OpenAiResponse = serde_json::from_slice(bytes).map_err(malformed)?;
            let choice = response.choices.into_iter().next();
            let finish_reason = choice.as_ref().and_then(|c| c.finish_reason.clone());
            let text = choice.and_then(|c| c.message).map(|m| content_text(&m.content)).unwrap_or_default();
            let usage = response.usage.and_then(|u| Some((u.prompt_tokens?, u.completion_tokens?)));
            (text, usage, response.model, finish_reason)
        }
        ProviderKind::Anthropic => {
            let response: AnthropicResponse = serde_json::from_slice(bytes).map_err(malformed)?;
            let text: String = response.content.iter().filter(|b| b.kind == "text").map(|b| b.text.as_str()).collect();
            // Cache writes and reads are billed at other rates; counting them at the input rate
            // overstates the cost a little, which errs on the safe side of a budget.
            let usage = response.usage.and_then(|u| {
                let cached = u.cache_creation_input_tokens.unwrap_or(0) + u.cache_read_input_tokens.unwrap_or(0);
                Some((u.input_tokens? + cached, u.output_tokens?))
            });
            (text, usage, response.model, response.stop_reason)
        }
    };
    if text.trim().is_empty() {
        return Err(LlmError::EmptyAnswer { url: url.to_string(), finish_reason });
    }
    let usage_estimated = usage.is_none();
    let (input_tokens, output_tokens) = usage.unwrap_or_else(|| {
        let prompt_chars = req.system.chars().count() + req.user.chars().count();
        (estimate_tokens(prompt_chars), estimate_tokens(text.chars().count()))
    });
    Ok(ChatResponse {
        cost_usd: cfg.price.cost(input_tokens, output_tokens),
        text,
        input_tokens,
        output_tokens,
        model: model.filter(|m| !m.is_empty()).unwrap_or_else(|| cfg.model.clone()),
        attempts: 0,
        latency_ms: 0,
        finish_reason,
        usage_estimated,
    })
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    /// A config for `server` with a model name of its own: wiremock reuses its servers' ports
    /// between tests, and the formats a server refused are remembered by URL and model.
    fn openai(server: &MockServer) -> ProviderConfig {
        static MODELS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let model = format!("test-model-{}", MODELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut cfg = ProviderConfig::new(ProviderKind::OpenAi, format!("{}/v1", server.uri()), model);
        cfg.timeout = Duration::from_secs(5);
        cfg
    }

    const TEST_KEY: &str = "sk-test-0123456789abcdef";

    fn test_env(var: &str) -> Option<String> {
        (var == "TEST_API_KEY").then(|| format!("{TEST_KEY}\n"))
    }

    fn request() -> ChatRequest {
        ChatRequest { system: "You are terse.".into(), user: "Say hi.".into(), json_schema: None }
    }

    fn answer(text: &str) -> Value {
        json!({
            "model": "served-model",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500 },
        })
    }

    async fn mount(server: &MockServer, response: ResponseTemplate, times: Option<u64>) {
        let mock = Mock::given(method("POST")).and(path("/v1/chat/completions")).respond_with(response);
        let mock = match times {
            Some(n) => mock.up_to_n_times(n),
            None => mock,
        };
        mock.mount(server).await;
    }

    #[tokio::test]
    async fn retry_after_429_is_honoured_then_succeeds() {
        let server = MockServer::start().await;
        mount(&server, ResponseTemplate::new(429).insert_header("retry-after", "1"), Some(1)).await;
        mount(&server, ResponseTemplate::new(200).set_body_json(answer("hi")), None).await;
        let started = Instant::now();
        let response = complete(&openai(&server), &request()).await.unwrap();
        assert_eq!(response.attempts, 2);
        assert_eq!(response.text, "hi");
        assert!(started.elapsed() >= Duration::from_millis(950), "waited only {:?}", started.elapsed());
        assert!(response.latency_ms >= 950);
    }

    /// `run --time-limit`: a slow server and a huge `Retry-After` end the call when the
    /// deadline does, not after the per-attempt timeout, retries and waits.
    #[tokio::test]
    async fn the_deadline_bounds_slow_answers_and_retry_after() {
        let server = MockServer::start().await;
        mount(
            &server,
            ResponseTemplate::new(200).set_body_json(answer("late")).set_delay(Duration::from_secs(30)),
            None,
        )
        .await;
        let mut cfg = openai(&server);
        cfg.timeout = Duration::from_secs(20);
        cfg.deadline = Some(Instant::now() + Duration::from_millis(1500));
        let started = Instant::now();
        let e = complete(&cfg, &request()).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, LlmError::OutOfTime { .. }), "{e:?}");
        assert!(took >= Duration::from_millis(1400) && took < Duration::from_millis(2500), "took {took:?}");
        assert!(e.to_string().contains("time limit"), "{e}");

        let server = MockServer::start().await;
        mount(&server, ResponseTemplate::new(429).insert_header("retry-after", "100000"), None).await;
        let mut cfg = openai(&server);
        cfg.deadline = Some(Instant::now() + Duration::from_secs(2));
        let started = Instant::now();
        let e = complete(&cfg, &request()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(1000), "no wait past the deadline: {:?}", started.elapsed());
        assert!(e.to_string().contains("429"), "{e}");

        cfg.deadline = Some(Instant::now());
        let e = complete(&cfg, &request()).await.unwrap_err();
        assert!(matches!(e, LlmError::OutOfTime { attempts: 0, .. }), "{e:?}");
    }

    #[tokio::test]
    async fn two_500s_then_success() {
        let server = MockServer::start().await;
        mount(&server, ResponseTemplate::new(500).set_body_string("boom"), Some(2)).await;
        mount(&server, ResponseTemplate::new(200).set_body_json(answer("ok")), None).await;
        let response = complete(&openai(&server), &request()).await.unwrap();
        assert_eq!(response.attempts, 3);
        assert_eq!(response.text, "ok");
    }

    #[tokio::test]
    async fn persistent_500_exhausts_retries() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {"message": "model crashed"}})))
            .expect(3)
            .mount(&server)
            .await;
        let mut cfg = openai(&server);
        cfg.max_retries = 2;
        let error = complete(&cfg, &request()).await.unwrap_err();
        let LlmError::RetriesExhausted { attempts, last, .. } = &error else { panic!("{error:?}") };
        assert_eq!(*attempts, 3);
        assert!(matches!(**last, LlmError::Http { status: 500, .. }), "{last:?}");
        let message = error.to_string();
        assert!(message.contains("after 3 attempts") && message.contains("model crashed"), "{message}");
    }

    #[tokio::test]
    async fn silent_server_times_out_quickly() {
        let server = MockServer::start().await;
        mount(
            &server,
            ResponseTemplate::new(200).set_body_json(answer("late")).set_delay(Duration::from_secs(30)),
            None,
        )
        .await;
        let mut cfg = openai(&server);
        cfg.timeout = Duration::from_millis(300);
        cfg.max_retries = 0;
        let started = Instant::now();
        let error = complete(&cfg, &request()).await.unwrap_err();
        assert!(matches!(error, LlmError::Timeout { .. }), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert!(error.to_string().contains("within 300ms"), "{error}");
    }

    #[tokio::test]
    async fn timeouts_are_retried() {
        let server = MockServer::start().await;
        mount(&server, ResponseTemplate::new(200).set_delay(Duration::from_secs(30)), Some(1)).await;
        mount(&server, ResponseTemplate::new(200).set_body_json(answer("second")), None).await;
        let mut cfg = openai(&server);
        cfg.timeout = Duration::from_millis(300);
        let response = complete(&cfg, &request()).await.unwrap();
        assert_eq!((response.attempts, response.text.as_str()), (2, "second"));
    }

    #[tokio::test]
    async fn refused_connection_is_retried_then_reported() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cfg = ProviderConfig::new(ProviderKind::OpenAi, format!("http://127.0.0.1:{port}/v1"), "m");
        cfg.max_retries = 1;
        let error = complete(&cfg, &request()).await.unwrap_err();
        let LlmError::RetriesExhausted { attempts: 2, last, .. } = &error else { panic!("{error:?}") };
        assert!(matches!(**last, LlmError::Connection { .. }), "{last:?}");
        assert!(error.to_string().contains("check base_url"), "{error}");
    }

    #[tokio::test]
    async fn truncated_json_is_malformed() {
        let server = MockServer::start().await;
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"hel"#;
        mount(&server, ResponseTemplate::new(200).set_body_raw(body, "application/json"), None).await;
        let error = complete(&openai(&server), &request()).await.unwrap_err();
        let LlmError::Malformed { excerpt, .. } = &error else { panic!("{error:?}") };
        assert!(excerpt.starts_with(r#"{"choices""#), "{excerpt}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "malformed bodies are not retried");
    }

    #[tokio::test]
    async fn ten_megabyte_answer_is_too_large() {
        let server = MockServer::start().await;
        let huge = format!(r#"{{"choices":[{{"message":{{"content":"{}"}}}}]}}"#, "x".repeat(10 * 1024 * 1024));
        mount(&server, ResponseTemplate::new(200).set_body_raw(huge, "application/json"), None).await;
        let error = complete(&openai(&server), &request()).await.unwrap_err();
        assert!(matches!(error, LlmError::TooLarge { limit: DEFAULT_MAX_RESPONSE_BYTES, .. }), "{error:?}");
    }

    /// wiremock always sends Content-Length, which is refused up front; a chunked answer has no
    /// length, so this exercises the cap on the bytes actually read.
    #[tokio::test]
    async fn chunked_answer_past_the_cap_is_too_large() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 65536];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 10 * 1024 * 1024 {
                let head = format!("{:x}\r\n", chunk.len());
                if stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(&chunk))
                    .and_then(|()| stream.write_all(b"\r\n"))
                    .is_err()
                {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let mut cfg = ProviderConfig::new(ProviderKind::OpenAi, format!("http://127.0.0.1:{port}/v1"), "m");
        cfg.max_response_bytes = 256 * 1024;
        let error = complete(&cfg, &request()).await.unwrap_err();
        assert!(matches!(error, LlmError::TooLarge { limit: 262_144, .. }), "{error:?}");
        // Joined off the runtime: the connection task that closes the socket, and so ends the
        // server's writes, runs on this test's only runtime thread.
        let sent = tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
        assert!(sent < 10 * 1024 * 1024, "the whole 10 MB was accepted ({sent} bytes)");
    }

    #[tokio::test]
    async fn unauthorized_is_not_retried_and_says_why() {
        let server = MockServer::start().await;
        let key = TEST_KEY;
        Mock::given(method("POST"))
            .and(header("authorization", format!("Bearer {key}").as_str()))
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"error": {"message": format!("Incorrect API key provided: {key}.")}})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let mut cfg = openai(&server);
        cfg.api_key_env = Some("TEST_API_KEY".into());
        let error = complete_with_env(&cfg, &request(), test_env).await.unwrap_err();
        assert!(matches!(error, LlmError::Http { status: 401, .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("HTTP 401") && message.contains("Incorrect API key provided"), "{message}");
        assert!(message.contains("check the API key"), "{message}");
        assert!(!message.contains(key) && message.contains("[redacted]"), "the key leaked: {message}");
    }

    #[tokio::test]
    async fn missing_key_variable_is_named_and_nothing_is_sent() {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
        let mut cfg = openai(&server);
        cfg.api_key_env = Some("AUTOHARNESS_TEST_SURELY_UNSET_KEY".into());
        let error = complete(&cfg, &request()).await.unwrap_err();
        assert!(matches!(&error, LlmError::MissingApiKey { var } if var == "AUTOHARNESS_TEST_SURELY_UNSET_KEY"));
        assert!(error.to_string().contains("AUTOHARNESS_TEST_SURELY_UNSET_KEY"), "{error}");
    }

    #[tokio::test]
    async fn usage_and_cost_come_from_the_server_and_the_price() {
        let server = MockServer::start().await;
        let mut cfg = openai(&server);
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_partial_json(json!({
                "model": cfg.model,
                "max_tokens": 64,
                "temperature": 0.0,
                "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}],
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer("hi")))
            .expect(1)
            .mount(&server)
            .await;
        cfg.price = Price { input_per_mtok: 2.5, output_per_mtok: 10.0 };
        cfg.max_tokens = 64;
        cfg.temperature = Some(0.0);
        let response = complete(&cfg, &request()).await.unwrap();
        assert_eq!((response.input_tokens, response.output_tokens), (1000, 500));
        assert!((response.cost_usd - 0.0075).abs() < 1e-12, "{}", response.cost_usd);
        assert_eq!(response.model, "served-model");
        assert_eq!(response.finish_reason.as_deref(), Some("stop"));
        assert!(!response.usage_estimated);
        let sent: Value = server.received_requests().await.unwrap()[0].body_json().unwrap();
        assert!(sent.get("response_format").is_none() && sent.get("authorization").is_none());
    }

    #[tokio::test]
    async fn missing_usage_is_estimated_from_characters() {
        let server = MockServer::start().await;
        let body = json!({"choices": [{"message": {"content": "twelve chars"}, "finish_reason": "length"}]});
        mount(&server, ResponseTemplate::new(200).set_body_json(body), None).await;
        let mut cfg = openai(&server);
        cfg.price = Price { input_per_mtok: 1_000_000.0, output_per_mtok: 0.0 };
        let response = complete(&cfg, &request()).await.unwrap();
        assert!(response.usage_estimated);
        // "You are terse." + "Say hi." = 21 chars -> 6 tokens; "twelve chars" = 12 chars -> 3.
        assert_eq!((response.input_tokens, response.output_tokens), (6, 3));
        assert_eq!(response.cost_usd, 6.0);
        assert_eq!(response.model, cfg.model);
        assert_eq!(response.finish_reason.as_deref(), Some("length"));
    }

    #[tokio::test]
    async fn empty_answer_is_an_error() {
        let server = MockServer::start().await;
        let body = json!({"choices": [{"message": {"content": null}, "finish_reason": "length"}]});
        mount(&server, ResponseTemplate::new(200).set_body_json(body), None).await;
        let error = complete(&openai(&server), &request()).await.unwrap_err();
        assert!(matches!(&error, LlmError::EmptyAnswer { finish_reason: Some(r), .. } if r == "length"), "{error:?}");
    }

    #[tokio::test]
    async fn rejected_json_schema_falls_back_to_json_object_with_the_schema_in_the_prompt() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_partial_json(json!({"response_format": {"type": "json_schema"}})))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "unknown field"}})))
            .expect(1)
            .mount(&server)
            .await;
        mount(&server, ResponseTemplate::new(200).set_body_json(answer(r#"{"ok":true}"#)), None).await;
        let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}});
        let req = ChatRequest { json_schema: Some(schema.clone()), ..request() };
        let response = complete(&openai(&server), &req).await.unwrap();
        assert_eq!((response.attempts, response.text.as_str()), (2, r#"{"ok":true}"#));
        let requests: Vec<Request> = server.received_requests().await.unwrap();
        let first: Value = requests[0].body_json().unwrap();
        assert_eq!(first["response_format"]["json_schema"]["schema"], schema);
        assert_eq!(first["messages"][0]["content"], "You are terse.");
        let second: Value = requests[1].body_json().unwrap();
        assert_eq!(second["response_format"], json!({"type": "json_object", "schema": schema}));
        let system = second["messages"][0]["content"].as_str().unwrap();
        assert!(system.starts_with("You are terse.") && system.contains(&schema.to_string()), "{system}");
    }

    /// llama-cpp-python answers an unsupported response_format with a 500 that names the field.
    #[tokio::test]
    async fn server_rejecting_every_response_format_gets_the_schema_in_the_prompt_only() {
        let server = MockServer::start().await;
        let rejection = json!({"error": {"message": "validation error: ('body', 'response_format', 'type')"}});
        Mock::given(method("POST"))
            .and(body_partial_json(json!({"response_format": {}})))
            .respond_with(ResponseTemplate::new(500).set_body_json(rejection))
            .expect(2)
            .mount(&server)
            .await;
        mount(&server, ResponseTemplate::new(200).set_body_json(answer(r#"{"ok":true}"#)), None).await;
        let schema = json!({"type": "object"});
        let mut cfg = openai(&server);
        cfg.max_retries = 0;
        let response = complete(&cfg, &ChatRequest { json_schema: Some(schema), ..request() }).await.unwrap();
        assert_eq!(response.attempts, 3);
        let third: Value = server.received_requests().await.unwrap()[2].body_json().unwrap();
        assert!(third.get("response_format").is_none(), "{third}");
        assert!(third["messages"][0]["content"].as_str().unwrap().contains("JSON Schema"), "{third}");
    }

    /// llama-cpp-python's refusal of `json_schema`, as the real server sends it (a 500).
    fn llama_cpp_refusal() -> Value {
        json!({"error": {"message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}", "type": "internal_server_error"}})
    }

    /// The `response_format.type` of each request the server received, in order.
    async fn formats_sent(server: &MockServer) -> Vec<String> {
        let requests: Vec<Request> = server.received_requests().await.unwrap();
        requests
            .iter()
            .map(|r| r.body_json::<Value>().unwrap()["response_format"]["type"].as_str().unwrap_or("-").to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_refused_json_schema_is_remembered_per_server_and_model() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_partial_json(json!({"response_format": {"type": "json_schema"}})))
            .respond_with(ResponseTemplate::new(500).set_body_json(llama_cpp_refusal()))
            .mount(&server)
            .await;
        mount(&server, ResponseTemplate::new(200).set_body_json(answer(r#"{"ok":true}"#)), None).await;
        let req = ChatRequest { json_schema: Some(json!({"type": "object"})), ..request() };
        let cfg = openai(&server);
        let attempts: Vec<u32> = [
            complete(&cfg, &req).await.unwrap().attempts,
            complete(&cfg, &req).await.unwrap().attempts,
            complete(&cfg, &req).await.unwrap().attempts,
        ]
        .into();
        // Three asks, four requests: only the first ask pays for the refusal.
        assert_eq!(attempts, [2, 1, 1]);
        assert_eq!(formats_sent(&server).await, ["json_schema", "json_object", "json_object", "json_object"]);
        // Another model behind the same URL may be served differently: it is asked afresh.
        let other = ProviderConfig { model: "other-model".into(), ..cfg };
        assert_eq!(complete(&other, &req).await.unwrap().attempts, 2);
    }

    #[tokio::test]
    async fn a_transient_failure_is_not_remembered_as_a_refusal() {
        let server = MockServer::start().await;
        mount(&server, ResponseTemplate::new(500).set_body_string("model crashed"), Some(1)).await;
        mount(&server, ResponseTemplate::new(200).set_body_json(answer(r#"{"ok":true}"#)), None).await;
        let req = ChatRequest { json_schema: Some(json!({"type": "object"})), ..request() };
        let cfg = openai(&server);
        assert_eq!(complete(&cfg, &req).await.unwrap().attempts, 2);
        assert_eq!(complete(&cfg, &req).await.unwrap().attempts, 1);
        // The 500 was retried in the same format, and the next ask still asks for the schema.
        assert_eq!(formats_sent(&server).await, ["json_schema", "json_schema", "json_schema"]);
    }

    #[tokio::test]
    async fn anthropic_request_and_answer_shapes() {
        let server = MockServer::start().await;
        let key = TEST_KEY;
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(header("x-api-key", key))
            .and(header("anthropic-version", "2023-06-01"))
            .and(body_partial_json(json!({
                "model": "claude-sonnet-4-5",
                "system": "You are terse.",
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 4096,
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [
                    {"type": "text", "text": "Hello, "},
                    {"type": "tool_use", "id": "t1", "name": "x", "input": {}},
                    {"type": "text", "text": "world"},
                ],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 2000, "output_tokens": 100, "cache_read_input_tokens": 0},
            })))
            .expect(1)
            .mount(&server)
            .await;
        let mut cfg = ProviderConfig::new(ProviderKind::Anthropic, server.uri(), "claude-sonnet-4-5");
        cfg.api_key_env = Some("TEST_API_KEY".into());
        let response = complete_with_env(&cfg, &request(), test_env).await.unwrap();
        assert_eq!(response.text, "Hello, world");
        assert_eq!((response.input_tokens, response.output_tokens), (2000, 100));
        assert_eq!(response.model, "claude-sonnet-4-5-20250929");
        assert_eq!(response.finish_reason.as_deref(), Some("end_turn"));
        // 2000 * $3/M + 100 * $15/M from the built-in price table.
        assert!((response.cost_usd - 0.0075).abs() < 1e-12, "{}", response.cost_usd);
        let sent: Value = server.received_requests().await.unwrap()[0].body_json().unwrap();
        assert!(sent.get("response_format").is_none() && sent.get("stream").is_none(), "{sent}");
    }

    #[tokio::test]
    async fn anthropic_error_body_is_excerpted() {
        let server = MockServer::start().await;
        let body = json!({"type": "error", "error": {"type": "not_found_error", "message": "model: claude-nope"}});
        Mock::given(method("POST")).respond_with(ResponseTemplate::new(404).set_body_json(body)).mount(&server).await;
        let mut cfg = ProviderConfig::new(ProviderKind::Anthropic, format!("{}/v1/", server.uri()), "claude-nope");
        cfg.api_key_env = None;
        let error = complete(&cfg, &request()).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("/v1/messages answered HTTP 404: model: claude-nope"), "{message}");
        assert!(message.contains("check base_url"), "{message}");
    }

    #[test]
    fn retry_after_accepts_seconds_dates_and_milliseconds() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        headers.insert("retry-after", HeaderValue::from_static("Sun, 06 Nov 1994 08:50:07 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert("retry-after", HeaderValue::from_static("Sun, 06 Nov 1994 08:00:00 GMT"));
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn http_dates_parse_to_unix_time() {
        let at = |s| parse_http_date(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(at("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(at("Tue, 29 Feb 2028 12:00:00 GMT"), Some(1_835_438_400));
        assert_eq!(at("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 UTC"), None);
    }

    #[test]
    fn backoff_grows_stays_jittered_and_capped() {
        let mut rng = XorShift(42);
        for retry in 1..40 {
            let full = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(retry - 1)).min(BACKOFF_MAX);
            let wait = backoff(retry, &mut rng);
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?} outside {full:?}");
        }
    }

    #[test]
    fn default_prices_match_by_longest_prefix() {
        assert_eq!(default_price("gpt-4o-mini-2024-07-18"), Price { input_per_mtok: 0.15, output_per_mtok: 0.60 });
        assert_eq!(default_price("openai/gpt-4o"), Price { input_per_mtok: 2.50, output_per_mtok: 10.0 });
        assert_eq!(default_price("claude-opus-4-5-20251101").input_per_mtok, 5.0);
        assert_eq!(default_price("claude-opus-4-1").input_per_mtok, 15.0);
        assert_eq!(default_price("SmolLM2-135M-Instruct"), Price::default());
    }

    #[test]
    fn config_errors_say_what_to_fix() {
        let cfg = ProviderConfig::new(ProviderKind::OpenAi, "localhost:8080", "m");
        let message = endpoint(&cfg).unwrap_err().to_string();
        assert!(message.contains("must start with http://"), "{message}");
        let cfg = ProviderConfig::new(ProviderKind::Anthropic, "https://api.anthropic.com/v1/", "m");
        assert_eq!(endpoint(&cfg).unwrap().as_str(), "https://api.anthropic.com/v1/messages");
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        let long = format!("line one\n\n  line two {}", "é".repeat(1000));
        let short = excerpt(&long);
        assert!(short.starts_with("line one line two é") && short.ends_with('…'));
        assert_eq!(short.chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(error_excerpt(b""), "(empty body)");
    }

    /// Against a real server: `scripts/llm-server.sh start`, then
    /// `AUTOHARNESS_LLM_URL=... cargo test -- --ignored real_server --nocapture`.
    #[tokio::test]
    #[allow(clippy::print_stdout, clippy::print_stderr, reason = "the figures are the point of this test")]
    async fn real_server() {
        // The real local server CI starts (scripts/llm-server.sh); skipped loudly without it,
        // and a failure under AUTOHARNESS_REQUIRE_ALL=1.
        let Some(url) = std::env::var("AUTOHARNESS_LLM_URL").ok().filter(|u| !u.is_empty()) else {
            let msg = "SKIPPED: AUTOHARNESS_LLM_URL is not set (scripts/llm-server.sh start)";
            assert!(std::env::var("AUTOHARNESS_REQUIRE_ALL").as_deref() != Ok("1"), "{msg}");
            eprintln!("{msg}");
            return;
        };
        let mut cfg = ProviderConfig::new(ProviderKind::OpenAi, url, "SmolLM2-135M-Instruct");
        cfg.max_tokens = 64;
        cfg.temperature = Some(0.0);
        let req = ChatRequest {
            system: "You are a helpful assistant. Answer in one short sentence.".into(),
            user: "What is the capital of France?".into(),
            json_schema: None,
        };
        let r = complete(&cfg, &req).await.unwrap();
        println!(
            "plain: answer={:?} input_tokens={} output_tokens={} estimated={} latency_ms={} attempts={} finish={:?} model={}",
            r.text,
            r.input_tokens,
            r.output_tokens,
            r.usage_estimated,
            r.latency_ms,
            r.attempts,
            r.finish_reason,
            r.model
        );
        assert!(!r.usage_estimated && r.input_tokens > 0 && r.output_tokens > 0);
        let schema = json!({"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]});
        let req = ChatRequest { json_schema: Some(schema), ..req };
        let r = complete(&cfg, &req).await.unwrap();
        println!(
            "json_schema: answer={:?} input_tokens={} output_tokens={} latency_ms={} attempts={} finish={:?}",
            r.text, r.input_tokens, r.output_tokens, r.latency_ms, r.attempts, r.finish_reason
        );
        let parsed: Value = serde_json::from_str(&r.text).expect("the constrained answer should be JSON");
        assert!(parsed.get("capital").is_some_and(Value::is_string), "{parsed}");
    }
}
