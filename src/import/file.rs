//! `bizkit-mirror import FILE`: the same import as the HTTP endpoint, read from a file
//! (or standard input) straight into the database, with a progress bar on a terminal.

use std::io::Read;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Importer, ItemResult, Summary};
use crate::contacts::ContactSettings;
use crate::store::{DynStore, SpaceId};

/// Imports `path` (`-` for standard input) into `space`. Each failed item is passed to
/// `report` as it happens (with the progress bar out of the way); the summary is returned.
pub async fn import_file(
    store: DynStore,
    space: SpaceId,
    settings: ContactSettings,
    path: &Path,
    report: impl Fn(&ItemResult),
) -> anyhow::Result<Summary> {
    let (input, length): (Box<dyn Read + Send>, Option<u64>) = if path == Path::new("-") {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        let length = file.metadata().ok().map(|m| m.len());
        (Box::new(file), length)
    };
    let bar = progress_bar(length);
    let mut importer = Importer::start(store, space, settings, input);
    while let Some(results) = importer.next().await {
        for r in results.iter().filter(|r| r.outcome.is_err()) {
            bar.suspend(|| report(r));
        }
        let s = importer.summary();
        bar.set_position(importer.bytes_read());
        bar.set_message(format!("{} contacts, {} created, {} failed", s.items, s.created, s.failed));
    }
    bar.finish_and_clear();
    Ok(importer.summary().clone())
}

/// Bytes read of the known length, or a spinner for a stream; hidden off a terminal.
fn progress_bar(length: Option<u64>) -> ProgressBar {
    let bar = match length {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{bar:32} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar
}
