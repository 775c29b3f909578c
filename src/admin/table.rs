//! Admin listings as plain-text tables for the command line.

use chrono::{DateTime, Utc};

use crate::store::KeyInfo;

/// Keys as a plain-text table for the command line.
pub fn keys_table(keys: &[KeyInfo]) -> String {
    let time =
        |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
    let mut rows =
        vec![["ID", "PREFIX", "KIND", "LABEL", "SCOPES", "CREATED", "LAST USED", "EXPIRES", "REVOKED", "RATE/MIN"]
            .map(str::to_owned)];
    for k in keys {
        rows.push([
            k.id.to_string(),
            k.prefix.clone(),
            k.kind.as_str().to_owned(),
            if k.label.is_empty() { "-".into() } else { k.label.clone() },
            k.scopes.join(","),
            time(Some(k.created_at)),
            time(k.last_used_at),
            time(k.expires_at),
            time(k.revoked_at),
            k.rate_limit_per_minute.map_or_else(|| "-".into(), |n| n.to_string()),
        ]);
    }
    let widths: Vec<usize> = (0..10).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
