//! Chat histories (Who&When), free-text logs (MAST), plain message lists.

use super::{FileCtx, ParseError, Sink};
use crate::trace::read::Records;

pub fn parse_history(_records: &mut Records, _ctx: &mut FileCtx<'_>, _sink: &mut Sink<'_>) -> Result<(), ParseError> {
    Err(ParseError { location: "file".into(), message: "this format's adapter is not written yet".into() })
}

pub fn parse_text_log(_records: &mut Records, _ctx: &mut FileCtx<'_>, _sink: &mut Sink<'_>) -> Result<(), ParseError> {
    Err(ParseError { location: "file".into(), message: "this format's adapter is not written yet".into() })
}

pub fn parse_messages(_records: &mut Records, _ctx: &mut FileCtx<'_>, _sink: &mut Sink<'_>) -> Result<(), ParseError> {
    Err(ParseError { location: "file".into(), message: "this format's adapter is not written yet".into() })
}
