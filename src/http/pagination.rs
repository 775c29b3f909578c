//! The one cursor codec of every paged list. A cursor is opaque to clients: the hex of
//! `<tag>|<pos>|<pos>…`, each position `<micros>.<id>` (where a newest-first list
//! resumes) or `-` (a list that is exhausted). The tag names the list and its version,
//! so a cursor of one list is refused by another.

use chrono::DateTime;

use crate::customers::MatchCursor;
use crate::store::PagePos;

/// The relation list's two sides: managers, then customers.
const MATCHES: &str = "v1";
/// The audit log.
const AUDIT: &str = "a1";
/// The customer list.
const CUSTOMERS: &str = "c1";

fn encode(tag: &str, positions: &[Option<PagePos>]) -> String {
    let mut text = tag.to_owned();
    for pos in positions {
        text.push('|');
        match pos {
            Some(p) => text.push_str(&format!("{}.{}", p.created_at.timestamp_micros(), p.id)),
            None => text.push('-'),
        }
    }
    hex::encode(text)
}

/// The `N` positions of a cursor of list `tag`; `None` for anything else.
fn decode<const N: usize>(tag: &str, cursor: &str) -> Option<[Option<PagePos>; N]> {
    let text = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    let mut parts = text.split('|');
    if parts.next()? != tag {
        return None;
    }
    let mut out = [None; N];
    for slot in &mut out {
        let part = parts.next()?;
        if part != "-" {
            let (micros, id) = part.split_once('.')?;
            // Only times the server can have stored: a position outside them is no cursor
            // of ours, and a database could not compare it.
            let micros: i64 = micros.parse().ok()?;
            if !(0..=PagePos::TOP.created_at.timestamp_micros()).contains(&micros) {
                return None;
            }
            let created_at = DateTime::from_timestamp_micros(micros)?;
            *slot = Some(PagePos { created_at, id: id.parse().ok()? });
        }
    }
    parts.next().is_none().then_some(out)
}

pub fn encode_matches(cursor: &MatchCursor) -> String {
    encode(MATCHES, &[cursor.managers, cursor.customers])
}

pub fn decode_matches(cursor: &str) -> Option<MatchCursor> {
    let [managers, customers] = decode(MATCHES, cursor)?;
    Some(MatchCursor { managers, customers })
}

pub fn encode_audit(pos: PagePos) -> String {
    encode(AUDIT, &[Some(pos)])
}

pub fn decode_audit(cursor: &str) -> Option<PagePos> {
    let [pos] = decode(AUDIT, cursor)?;
    pos
}

pub fn encode_customers(pos: PagePos) -> String {
    encode(CUSTOMERS, &[Some(pos)])
}

pub fn decode_customers(cursor: &str) -> Option<PagePos> {
    let [pos] = decode(CUSTOMERS, cursor)?;
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(id: i64) -> PagePos {
        PagePos { created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(), id }
    }

    #[test]
    fn match_cursor_round_trips_and_rejects_junk() {
        for c in [
            MatchCursor { managers: Some(pos(42)), customers: None },
            MatchCursor { managers: None, customers: Some(pos(42)) },
        ] {
            assert_eq!(decode_matches(&encode_matches(&c)), Some(c));
        }
        for junk in
            ["", "zz", &hex::encode("v2|-|-"), &hex::encode("v1|-"), &hex::encode("v1|x.1|-"), &hex::encode("v1|-|-|-")]
        {
            assert_eq!(decode_matches(junk), None, "{junk}");
        }
    }

    #[test]
    fn audit_cursor_round_trips_and_rejects_junk() {
        assert_eq!(decode_audit(&encode_audit(pos(7))), Some(pos(7)));
        for junk in
            ["", "zz", &hex::encode("a2|1.1"), &hex::encode("a1|x.1"), &hex::encode("a1|1"), &hex::encode("a1|-")]
        {
            assert_eq!(decode_audit(junk), None, "{junk}");
        }
        assert_eq!(decode_audit(&encode_matches(&MatchCursor::START)), None, "another list's cursor");
    }

    #[test]
    fn customer_cursor_round_trips_and_rejects_junk() {
        assert_eq!(decode_customers(&encode_customers(pos(9))), Some(pos(9)));
        for junk in
            ["", "zz", &hex::encode("c2|1.1"), &hex::encode("c1|x.1"), &hex::encode("c1|-"), &encode_audit(pos(9))]
        {
            assert_eq!(decode_customers(junk), None, "{junk}");
        }
    }
}
