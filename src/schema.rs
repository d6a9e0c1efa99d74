//! The name and version of every document autoharness writes for machines: each `--json`
//! output (docs/json.md lists exactly [`JSON_OUTPUTS`]; `tests/tidy.rs` checks it) and the
//! case file format (docs/cases.md). A breaking change of a document bumps its version here.

pub const MINE: &str = "autoharness.mine/v1";
pub const CLUSTERS: &str = "autoharness.clusters/v1";
pub const CLUSTER: &str = "autoharness.cluster/v1";
pub const CASES: &str = "autoharness.cases/v1";
pub const EVAL: &str = "autoharness.eval/v1";
pub const GATE: &str = "autoharness.gate/v1";
pub const GATE_SHARD: &str = "autoharness.gate-shard/v1";
pub const RUN: &str = "autoharness.run/v1";
pub const RUN_SHARD: &str = "autoharness.run-shard/v1";
pub const TRACES_LS: &str = "autoharness.traces-ls/v1";
pub const TRACE_SHOW: &str = "autoharness.trace-show/v1";
pub const FORMATS: &str = "autoharness.formats/v1";
pub const INIT: &str = "autoharness.init/v1";
pub const DOCTOR: &str = "autoharness.doctor/v1";

/// Every `--json` document, as docs/json.md documents them.
pub const JSON_OUTPUTS: &[&str] = &[
    MINE, CLUSTERS, CLUSTER, CASES, EVAL, GATE, GATE_SHARD, RUN, RUN_SHARD, TRACES_LS, TRACE_SHOW, FORMATS, INIT,
    DOCTOR,
];

/// A case file (`evals/<harness>/<cluster>/<case>.json`).
pub const CASE: &str = "autoharness.case/v1";

/// A domain state stored and printed as text (a database `CHECK (x IN (...))` column, a
/// JSON field): one enum, one spelling per variant, used by serde, by the store and by the
/// reports alike, so a typo is a compile error and a corrupt row a clear one.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        // Stored as its text in any database whose text columns decode to `String`: a row
        // that is none of the spellings is a decode error naming the column and the value.
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<$name, sqlx::error::BoxDynError> {
                Ok($name::try_from(<String as sqlx::Decode<'r, DB>>::decode(value)?)?)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut DB::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode(self.as_str().to_string(), buf)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::schema::UnknownText;

            fn try_from(text: String) -> Result<$name, Self::Error> {
                $name::parse(&text).ok_or_else(|| $crate::schema::UnknownText {
                    what: $what,
                    text,
                    expected: Self::ALL.iter().map(|v| v.as_str()).collect(),
                })
            }
        }
    };
}
pub(crate) use text_enum;

/// A stored or written value that is none of its type's spellings (a row edited by hand,
/// a store written by a newer autoharness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownText {
    pub what: &'static str,
    pub text: String,
    pub expected: Vec<&'static str>,
}

impl std::fmt::Display for UnknownText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {} '{}' (expected one of: {})", self.what, self.text, self.expected.join(", "))
    }
}

impl std::error::Error for UnknownText {}
