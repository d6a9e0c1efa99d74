//! Row-per-span dumps with nested child_spans (TRAIL, ClickHouse).

use super::{FileCtx, ParseError, Sink};
use crate::trace::read::Records;

pub fn parse(_records: &mut Records, _ctx: &mut FileCtx<'_>, _sink: &mut Sink<'_>) -> Result<(), ParseError> {
    Err(ParseError { location: "file".into(), message: "this format's adapter is not written yet".into() })
}
