//! Format adapter tests: see tests/fixtures/formats/.
#[allow(unused_imports)] use crate::common::*;
