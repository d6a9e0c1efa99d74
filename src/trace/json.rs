//! Lenient readers for the messy JSON of real trace files (trace-formats.md §8): ints as
//! strings, enums as ints or names, JSON inside strings, Python reprs, many time shapes.
//! Every adapter reads fields through these, so the leniency lives in one place.

use serde_json::{Map, Value};

use super::model::{AttrMap, Nanos};

/// `v[k1][k2]…`, None when any step is missing.
pub fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for k in keys {
        cur = cur.get(k)?;
    }
    Some(cur)
}

/// A non-empty string field.
pub fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A string, or a number/bool rendered as a string (ids are sometimes ints).
pub fn string_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(scalar_string)
}

pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An integer given as a number or a decimal string.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn as_u64(v: &Value) -> Option<u64> {
    as_i64(v).and_then(|i| u64::try_from(i).ok())
}

/// A float given as a number or a string (`"NaN"` and friends become None).
pub fn as_f64(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }?;
    f.is_finite().then_some(f)
}

pub fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(as_u64)
}

pub fn f64_of(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(as_f64)
}

/// A bool given as a bool, `"true"`/`"false"`, or 0/1.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

/// If `v` is a string holding a JSON object or array, parse it; else return it unchanged.
/// The raw string is not kept separately: re-serializing the parsed value is lossless
/// enough for every use we have (evidence, excerpts, cases).
pub fn decode_json_string(v: Value) -> Value {
    if let Value::String(s) = &v {
        let t = s.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                return parsed;
            }
        }
    }
    v
}

/// Parse a time: unix nanos/micros/millis/seconds as number or string (scale guessed by
/// magnitude), or ISO-8601 / RFC 3339 with or without zone (no zone = UTC).
pub fn parse_time(v: &Value) -> Option<Nanos> {
    match v {
        Value::Number(n) => n.as_f64().and_then(epoch_to_nanos),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return None;
            }
            if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return s.parse::<f64>().ok().and_then(|f| {
                    // Whole-number strings keep full precision (nanos overflow f64).
                    match s.parse::<i128>() {
                        Ok(i) if i > 1_000_000_000_000_000_000 => Some(i),
                        _ => epoch_to_nanos(f),
                    }
                });
            }
            parse_iso(s)
        }
        _ => None,
    }
}

fn epoch_to_nanos(f: f64) -> Option<Nanos> {
    if !f.is_finite() || f <= 0.0 {
        return None;
    }
    // Scale by magnitude: seconds ~1e9, millis ~1e12, micros ~1e15, nanos ~1e18.
    let nanos = if f < 1e11 {
        f * 1e9
    } else if f < 1e14 {
        f * 1e6
    } else if f < 1e17 {
        f * 1e3
    } else {
        f
    };
    Some(nanos as Nanos)
}

fn parse_iso(s: &str) -> Option<Nanos> {
    use chrono::{DateTime, NaiveDateTime};
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return dt.timestamp_nanos_opt().map(Nanos::from);
    }
    // Python isoformat with a space, or with an offset but no colon.
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return dt.timestamp_nanos_opt().map(Nanos::from);
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y%m%dT%H%M%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return dt.and_utc().timestamp_nanos_opt().map(Nanos::from);
        }
    }
    None
}

/// Format nanos as RFC 3339 UTC (for display and JSON output).
pub fn format_time(nanos: Nanos) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, sub)
        .map(|dt| dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| nanos.to_string())
}

/// ISO-8601 duration (`PT1M20.9S`, `P1DT2H`) in nanoseconds.
pub fn parse_iso_duration(s: &str) -> Option<Nanos> {
    let s = s.trim();
    let rest = s.strip_prefix('P')?;
    let mut total = 0f64;
    let mut in_time = false;
    let mut num = String::new();
    for c in rest.chars() {
        match c {
            'T' => in_time = true,
            '0'..='9' | '.' | ',' => num.push(if c == ',' { '.' } else { c }),
            unit => {
                let n: f64 = num.parse().ok()?;
                num.clear();
                let secs = match (unit, in_time) {
                    ('D', false) => 86_400.0,
                    ('W', false) => 604_800.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    _ => return None,
                };
                total += n * secs;
            }
        }
    }
    if !num.is_empty() {
        return None;
    }
    Some((total * 1e9) as Nanos)
}

/// Decode an OTLP `AnyValue` (camelCase or snake_case keys) into plain JSON; strings that
/// hold JSON objects/arrays are decoded too.
pub fn otlp_any_value(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    for (k, inner) in obj {
        match k.as_str() {
            "stringValue" | "string_value" => return decode_json_string(inner.clone()),
            "boolValue" | "bool_value" => return as_bool(inner).map(Value::Bool).unwrap_or(Value::Null),
            "intValue" | "int_value" => {
                return as_i64(inner).map(Value::from).unwrap_or_else(|| inner.clone());
            }
            "doubleValue" | "double_value" => {
                return as_f64(inner)
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or_else(|| inner.clone());
            }
            "arrayValue" | "array_value" => {
                let values = inner.get("values").and_then(Value::as_array);
                return Value::Array(values.map(|a| a.iter().map(otlp_any_value).collect()).unwrap_or_default());
            }
            "kvlistValue" | "kvlist_value" => {
                return Value::Object(inner.get("values").map(otlp_key_values).unwrap_or_default());
            }
            "bytesValue" | "bytes_value" => return inner.clone(),
            _ => {}
        }
    }
    // `{}` is the empty AnyValue.
    if obj.is_empty() { Value::Null } else { v.clone() }
}

/// `[{key, value: AnyValue}]` → map. Also accepts an already-flat object.
pub fn otlp_key_values(v: &Value) -> AttrMap {
    match v {
        Value::Array(items) => {
            let mut map = Map::with_capacity(items.len());
            for kv in items {
                if let Some(key) = kv.get("key").and_then(Value::as_str) {
                    let value = kv.get("value").map(otlp_any_value).unwrap_or(Value::Null);
                    map.insert(key.to_string(), value);
                }
            }
            map
        }
        Value::Object(obj) => obj
            .iter()
            .map(|(k, v)| (k.clone(), decode_json_string(v.clone())))
            .collect(),
        _ => Map::new(),
    }
}

/// Parse a Python literal (repr of dict/list/tuple/str/int/float/True/False/None) into
/// JSON. TRAIL stores attribute maps this way. None when the text is not a literal.
pub fn python_literal(s: &str) -> Option<Value> {
    let mut p = PyParser { s: s.as_bytes(), i: 0, depth: 0 };
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct PyParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: u32,
}

impl PyParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn value(&mut self) -> Option<Value> {
        self.ws();
        self.depth += 1;
        if self.depth > 128 {
            return None;
        }
        let c = *self.s.get(self.i)?;
        let v = match c {
            b'{' => self.dict(),
            b'[' => self.seq(b']'),
            b'(' => self.seq(b')'),
            b'\'' | b'"' => self.string().map(Value::String),
            _ => self.atom(),
        };
        self.depth -= 1;
        v
    }
    fn dict(&mut self) -> Option<Value> {
        self.i += 1;
        let mut map = Map::new();
        loop {
            self.ws();
            if self.s.get(self.i) == Some(&b'}') {
                self.i += 1;
                return Some(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return None;
            }
            self.i += 1;
            let v = self.value()?;
            map.insert(key, v);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return None,
            }
        }
    }
    fn seq(&mut self, close: u8) -> Option<Value> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.s.get(self.i) == Some(&close) {
                self.i += 1;
                return Some(Value::Array(items));
            }
            items.push(self.value()?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(c) if *c == close => {}
                _ => return None,
            }
        }
    }
    fn string(&mut self) -> Option<String> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            if c == quote {
                return String::from_utf8(out).ok();
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let e = *self.s.get(self.i)?;
            self.i += 1;
            match e {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'x' => {
                    let hex = std::str::from_utf8(self.s.get(self.i..self.i + 2)?).ok()?;
                    let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                    self.i += 2;
                    out.extend_from_slice(ch.to_string().as_bytes());
                }
                b'u' | b'U' => {
                    let n = if e == b'u' { 4 } else { 8 };
                    let hex = std::str::from_utf8(self.s.get(self.i..self.i + n)?).ok()?;
                    let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?).unwrap_or('\u{FFFD}');
                    self.i += n;
                    out.extend_from_slice(ch.to_string().as_bytes());
                }
                other => out.push(other),
            }
        }
        None
    }
    fn atom(&mut self) -> Option<Value> {
        let start = self.i;
        while self.i < self.s.len() && !matches!(self.s[self.i], b',' | b':' | b'}' | b']' | b')') {
            self.i += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.i]).ok()?.trim();
        Some(match word {
            "True" => Value::Bool(true),
            "False" => Value::Bool(false),
            "None" => Value::Null,
            "nan" | "inf" | "-inf" => Value::Null,
            w => {
                if let Ok(i) = w.parse::<i64>() {
                    Value::from(i)
                } else if let Ok(f) = w.parse::<f64>() {
                    serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
                } else {
                    return None;
                }
            }
        })
    }
}

/// A map given as a JSON object, a JSON string, or a Python repr string.
pub fn lenient_map(v: &Value) -> AttrMap {
    match v {
        Value::Object(m) => m.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s).ok().or_else(|| python_literal(s)) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

/// The top-level keys of a value, sorted, for "unknown format" messages.
pub fn keys_of(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&str> = m.keys().map(String::as_str).take(12).collect();
            keys.sort_unstable();
            let more = if m.len() > 12 { ", …" } else { "" };
            format!("{{{}{more}}}", keys.join(", "))
        }
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::String(_) => "a string".into(),
        Value::Number(_) => "a number".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Null => "null".into(),
    }
}

/// Truncate text at a char boundary, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times() {
        assert_eq!(parse_time(&json!("1544712660000000000")), Some(1_544_712_660_000_000_000));
        assert_eq!(parse_time(&json!(1544712660000u64)), Some(1_544_712_660_000_000_000));
        assert_eq!(parse_time(&json!("2025-12-24T10:00:05.000Z")), Some(1_766_570_405_000_000_000));
        assert_eq!(parse_time(&json!("2025-12-24T10:00:05")), Some(1_766_570_405_000_000_000));
        assert_eq!(parse_time(&json!("2025-12-24 10:00:05.000000+00:00")), Some(1_766_570_405_000_000_000));
        assert_eq!(parse_iso_duration("PT1M20.5S"), Some(80_500_000_000));
        assert_eq!(parse_iso_duration("nope"), None);
    }

    #[test]
    fn python_reprs() {
        let v = python_literal("{'a': 'it\\'s', \"b\": [1, 2.5, None, True], 'c': (1,)}").unwrap();
        assert_eq!(v, json!({"a": "it's", "b": [1, 2.5, null, true], "c": [1]}));
        assert!(python_literal("{'a': ").is_none());
    }

    #[test]
    fn any_values() {
        let v = json!([{"key":"n","value":{"intValue":"412"}},{"key":"m","value":{"stringValue":"[{\"role\":\"user\"}]"}},
                      {"key":"k","value":{"kvlistValue":{"values":[{"key":"x","value":{"boolValue":true}}]}}}]);
        let m = otlp_key_values(&v);
        assert_eq!(m["n"], json!(412));
        assert_eq!(m["m"], json!([{"role":"user"}]));
        assert_eq!(m["k"], json!({"x": true}));
    }
}
